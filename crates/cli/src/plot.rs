//! PNG charts for the command line: line plots (one curve per series, with a
//! legend) and grids of scatter panels.
//!
//! Everything renders into an in-memory RGB buffer and comes back as PNG
//! bytes; nothing here touches the file system. The caller writes the bytes
//! with [`crate::output::write_file`], which keeps the write atomic and
//! refuses to replace an existing file without `--force`.
//!
//! Text uses DejaVu Sans, embedded in the binary (`assets/DejaVuSans.ttf`,
//! licence in `assets/LICENSE-DejaVu.txt`), so charts look the same on
//! machines without system fonts.
//!
//! Input is never trusted: non-finite points are skipped (a line is broken
//! there), points outside the plotted ranges are clipped or left out, and
//! every degenerate case is a [`PlotError`] rather than a panic.

// The subcommands that draw plots land after this module.
#![allow(dead_code)]

use std::sync::OnceLock;

use image::ImageEncoder;
use image::codecs::png::PngEncoder;
use plotters::backend::RGBPixel;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

/// The font family every chart uses; registered from the embedded font.
const FONT: &str = "sans-serif";
/// DejaVu Sans, embedded so that rendering needs no system fonts.
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Largest width or height of an image, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest number of pixels in an image (about 120 MB of RGB).
pub const MAX_PIXELS: u64 = 40_000_000;

/// Text and axis colour.
const INK: RGBColor = RGBColor(40, 40, 40);
/// Colour of notes and secondary text.
const MUTED: RGBColor = RGBColor(110, 110, 110);
/// Colour of the grid lines.
const GRID: RGBColor = RGBColor(225, 225, 225);
/// Colour of scatter dots.
const DOT: RGBColor = RGBColor(31, 119, 180);

/// Line colours, in order: the "tab10" palette, distinct and colour-blind
/// tolerant. Series past the tenth reuse it with dashed lines.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// A line plot without any series.
    #[error("nothing to plot: the line plot has no series")]
    NoSeries,
    /// A scatter grid without any panels.
    #[error("nothing to plot: the scatter grid has no panels")]
    NoPanels,
    /// Every point of every series or panel is NaN or infinite (or there
    /// are no points at all).
    #[error("nothing to plot: no point has finite coordinates")]
    NoFinitePoints,
    /// The image would be empty, too small to lay out, or too large.
    #[error("an image of {width}x{height} px cannot be drawn ({reason})")]
    Size {
        /// Requested width in pixels.
        width: u64,
        /// Requested height in pixels.
        height: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A scatter grid with zero columns.
    #[error("a scatter grid needs at least one column")]
    NoColumns,
    /// An axis range that is not a finite, increasing interval.
    #[error("the {axis} range ({lo}, {hi}) is not a finite, increasing interval")]
    Range {
        /// `"x"` or `"y"`.
        axis: &'static str,
        /// Lower end.
        lo: f64,
        /// Upper end.
        hi: f64,
    },
    /// The embedded font could not be registered with the renderer.
    #[error("the embedded plot font could not be loaded")]
    Font,
    /// The renderer failed.
    #[error("drawing the plot: {0}")]
    Draw(String),
    /// PNG encoding failed.
    #[error("encoding PNG: {0}")]
    Encode(#[from] image::ImageError),
}

/// One named curve of a [`LinePlot`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Name shown in the legend.
    pub name: String,
    /// `(x, y)` points, joined in the order given. A non-finite point
    /// breaks the line there.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `name` through `points`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }
}

/// Curves on one pair of axes, with a title, axis labels and a legend to
/// the right of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePlot {
    /// Title above the chart; empty for none.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// The curves, drawn in order with colours from a 10-colour palette
    /// (dashed from the eleventh on).
    pub series: Vec<Series>,
    /// Horizontal range; `None` spans the finite points.
    pub x_range: Option<(f64, f64)>,
    /// Vertical range; `None` spans the finite points (within `x_range`)
    /// with 5 % padding. Lines leaving it are clipped at its edge, which is
    /// how curves that diverge at an end point should be shown.
    pub y_range: Option<(f64, f64)>,
    /// Image width in pixels, at least [`LinePlot::MIN_SIZE`]`.0`.
    pub width: u32,
    /// Image height in pixels, at least [`LinePlot::MIN_SIZE`]`.1`.
    pub height: u32,
}

impl LinePlot {
    /// Default image size in pixels.
    pub const DEFAULT_SIZE: (u32, u32) = (1000, 650);
    /// Smallest image size that leaves room for the chart.
    pub const MIN_SIZE: (u32, u32) = (320, 200);

    /// An empty plot of the default size with automatic ranges.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            x_range: None,
            y_range: None,
            width: Self::DEFAULT_SIZE.0,
            height: Self::DEFAULT_SIZE.1,
        }
    }

    /// Appends a series.
    pub fn push(&mut self, name: impl Into<String>, points: Vec<(f64, f64)>) -> &mut Self {
        self.series.push(Series::new(name, points));
        self
    }

    /// The `(x, y)` ranges the chart will show: the given ones, or ranges
    /// derived from the finite points.
    pub fn resolved_ranges(&self) -> Result<((f64, f64), (f64, f64)), PlotError> {
        if self.series.is_empty() {
            return Err(PlotError::NoSeries);
        }
        let finite = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter().copied())
                .filter(|(x, y)| x.is_finite() && y.is_finite())
        };
        if finite().next().is_none() {
            return Err(PlotError::NoFinitePoints);
        }
        let x = match self.x_range {
            Some((lo, hi)) => checked_range("x", lo, hi)?,
            None => {
                let (lo, hi) = min_max(finite().map(|p| p.0)).ok_or(PlotError::NoFinitePoints)?;
                widen_degenerate("x", lo, hi)?
            }
        };
        let y = match self.y_range {
            Some((lo, hi)) => checked_range("y", lo, hi)?,
            None => {
                // Points within the x range decide; all finite points if none are.
                let inside = min_max(finite().filter(|p| p.0 >= x.0 && p.0 <= x.1).map(|p| p.1));
                let (lo, hi) = inside
                    .or_else(|| min_max(finite().map(|p| p.1)))
                    .ok_or(PlotError::NoFinitePoints)?;
                let (lo, hi) = widen_degenerate("y", lo, hi)?;
                let pad = 0.05 * (hi - lo);
                checked_range("y", lo - pad, hi + pad)?
            }
        };
        Ok((x, y))
    }

    /// Renders the plot and returns the PNG file's bytes.
    pub fn render_png(&self) -> Result<Vec<u8>, PlotError> {
        let (w, h) = (self.width, self.height);
        if w < Self::MIN_SIZE.0 || h < Self::MIN_SIZE.1 {
            return Err(size_error(w.into(), h.into(), "smaller than 320x200"));
        }
        let ((x0, x1), (y0, y1)) = self.resolved_ranges()?;
        let rect = Rect { x0, x1, y0, y1 };
        render(w, h, |root| {
            let body = if self.title.is_empty() {
                root.clone()
            } else {
                root.titled(&self.title, (FONT, 24).into_font().color(&INK))
                    .map_err(draw_error)?
            };
            let legend_w = legend_width(&body, &self.series, w)?;
            let (chart_area, legend_area) = body.split_horizontally(w.saturating_sub(legend_w));

            let mut chart = ChartBuilder::on(&chart_area)
                .margin_top(8)
                .margin_left(12)
                .margin_right(16)
                .margin_bottom(8)
                .x_label_area_size(56)
                .y_label_area_size(80)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(draw_error)?;
            let x_fmt = |v: &f64| format_tick(*v, x1 - x0);
            let y_fmt = |v: &f64| format_tick(*v, y1 - y0);
            chart
                .configure_mesh()
                .x_desc(self.x_label.as_str())
                .y_desc(self.y_label.as_str())
                .axis_desc_style((FONT, 18).into_font().color(&INK))
                .label_style((FONT, 16).into_font().color(&INK))
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&y_fmt)
                .x_labels(11)
                .y_labels(9)
                .bold_line_style(GRID.stroke_width(1))
                .light_line_style(TRANSPARENT)
                .axis_style(INK.stroke_width(1))
                .draw()
                .map_err(draw_error)?;

            for (i, series) in self.series.iter().enumerate() {
                let style = series_style(i);
                let (lines, dots) = clip_polylines(&series.points, &rect);
                for line in lines {
                    if i < PALETTE.len() {
                        chart
                            .draw_series(LineSeries::new(line, style))
                            .map_err(draw_error)?;
                    } else {
                        chart
                            .draw_series(DashedLineSeries::new(line, 10, 6, style))
                            .map_err(draw_error)?;
                    }
                }
                chart
                    .draw_series(dots.into_iter().map(|p| Circle::new(p, 3, style.filled())))
                    .map_err(draw_error)?;
            }

            let (_, plot_y) = chart.plotting_area().get_pixel_range();
            let top = plot_y.start - legend_area.get_base_pixel().1;
            draw_legend(&legend_area, &self.series, top)
        })
    }
}

/// One titled scatter panel of a [`ScatterGrid`].
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// Points; non-finite ones and those outside the range are not drawn
    /// (a note in the corner counts them).
    pub points: Vec<[f64; 2]>,
}

impl Panel {
    /// A panel titled `title` showing `points`.
    pub fn new(title: impl Into<String>, points: Vec<[f64; 2]>) -> Self {
        Self {
            title: title.into(),
            points,
        }
    }
}

/// Scatter panels on a grid, filled row by row, all on the same axes.
///
/// The image is `min(columns, panels) * panel_size` wide and
/// `rows * panel_size` high, plus [`ScatterGrid::TITLE_BAND`] pixels when
/// `title` is not empty. Dots are small and translucent, so thousands of
/// points read as a density.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterGrid {
    /// Title over the whole grid; empty for none.
    pub title: String,
    /// The panels, row by row.
    pub panels: Vec<Panel>,
    /// Panels per row, at least 1 (more than there are panels is fine).
    pub columns: usize,
    /// Side of each square panel in pixels, at least
    /// [`ScatterGrid::MIN_PANEL_SIZE`].
    pub panel_size: u32,
    /// `((x_lo, x_hi), (y_lo, y_hi))` shared by all panels; `None` for a
    /// robust automatic range (see [`ScatterGrid::resolved_range`]).
    pub shared_range: Option<((f64, f64), (f64, f64))>,
}

impl ScatterGrid {
    /// Default side of a panel in pixels.
    pub const DEFAULT_PANEL_SIZE: u32 = 360;
    /// Smallest side of a panel in pixels.
    pub const MIN_PANEL_SIZE: u32 = 160;
    /// Height of the band holding the grid's title, in pixels.
    pub const TITLE_BAND: u32 = 44;

    /// A grid of `panels` with `columns` per row, default panel size,
    /// automatic range and no overall title.
    pub fn new(panels: Vec<Panel>, columns: usize) -> Self {
        Self {
            title: String::new(),
            panels,
            columns,
            panel_size: Self::DEFAULT_PANEL_SIZE,
            shared_range: None,
        }
    }

    /// A single scatter plot: a one-panel grid of side 600 px.
    pub fn single(panel: Panel) -> Self {
        Self {
            panel_size: 600,
            ..Self::new(vec![panel], 1)
        }
    }

    /// Image `(width, height)` in pixels, checked against the limits.
    pub fn dimensions(&self) -> Result<(u32, u32), PlotError> {
        let (cols, rows) = self.layout()?;
        let ps = u64::from(self.panel_size);
        let band = if self.title.is_empty() {
            0
        } else {
            u64::from(Self::TITLE_BAND)
        };
        let (w, h) = (cols as u64 * ps, rows as u64 * ps + band);
        if self.panel_size < Self::MIN_PANEL_SIZE {
            return Err(size_error(w, h, "panels smaller than 160 px"));
        }
        checked_size(w, h)
    }

    /// The range every panel shows: `shared_range` if given, otherwise the
    /// 0.5 %–99.5 % quantiles of all finite coordinates of all panels,
    /// padded by 10 % on each side and widened to a square (panels are
    /// square, so shapes are not distorted). Outliers therefore do not
    /// squash the plot; they are counted in a corner note instead.
    pub fn resolved_range(&self) -> Result<((f64, f64), (f64, f64)), PlotError> {
        if self.panels.is_empty() {
            return Err(PlotError::NoPanels);
        }
        let finite = self
            .panels
            .iter()
            .flat_map(|p| p.points.iter())
            .filter(|p| p[0].is_finite() && p[1].is_finite());
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = finite.map(|p| (p[0], p[1])).unzip();
        if xs.is_empty() {
            return Err(PlotError::NoFinitePoints);
        }
        if let Some(((x0, x1), (y0, y1))) = self.shared_range {
            return Ok((checked_range("x", x0, x1)?, checked_range("y", y0, y1)?));
        }
        let robust = |v: &mut Vec<f64>, axis| {
            v.sort_unstable_by(f64::total_cmp);
            let (lo, hi) = (quantile(v, 0.005), quantile(v, 0.995));
            let (lo, hi) = widen_degenerate(axis, lo, hi)?;
            let pad = 0.1 * (hi - lo);
            Ok::<_, PlotError>((lo - pad, hi + pad))
        };
        let (x0, x1) = robust(&mut xs, "x")?;
        let (y0, y1) = robust(&mut ys, "y")?;
        // Square up: grow the narrower range about its centre.
        let half = 0.5 * (x1 - x0).max(y1 - y0);
        let (xc, yc) = (0.5 * x0 + 0.5 * x1, 0.5 * y0 + 0.5 * y1);
        Ok((
            checked_range("x", xc - half, xc + half)?,
            checked_range("y", yc - half, yc + half)?,
        ))
    }

    /// Renders the grid and returns the PNG file's bytes.
    pub fn render_png(&self) -> Result<Vec<u8>, PlotError> {
        let (w, h) = self.dimensions()?;
        let ((x0, x1), (y0, y1)) = self.resolved_range()?;
        let (cols, rows) = self.layout()?;
        render(w, h, |root| {
            let grid = if self.title.is_empty() {
                root.clone()
            } else {
                let (band, grid) = root.split_vertically(Self::TITLE_BAND);
                let style = (FONT, 24)
                    .into_font()
                    .color(&INK)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                band.draw(&Text::new(
                    self.title.as_str(),
                    (w as i32 / 2, Self::TITLE_BAND as i32 / 2),
                    style,
                ))
                .map_err(draw_error)?;
                grid
            };
            let cells = grid.split_evenly((rows, cols));
            for (panel, cell) in self.panels.iter().zip(cells.iter()) {
                draw_panel(cell, panel, (x0, x1), (y0, y1), self.panel_size)?;
            }
            Ok(())
        })
    }

    /// `(columns, rows)` actually used.
    fn layout(&self) -> Result<(usize, usize), PlotError> {
        if self.panels.is_empty() {
            return Err(PlotError::NoPanels);
        }
        if self.columns == 0 {
            return Err(PlotError::NoColumns);
        }
        let cols = self.columns.min(self.panels.len());
        Ok((cols, self.panels.len().div_ceil(cols)))
    }
}

/// The drawing area every chart is drawn on.
type Area<'a> = DrawingArea<BitMapBackend<'a, RGBPixel>, Shift>;

/// Registers the embedded font with plotters, once per process.
fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

/// Renders `draw` onto a white `w`×`h` RGB buffer and encodes it as PNG.
fn render(
    w: u32,
    h: u32,
    draw: impl FnOnce(&Area<'_>) -> Result<(), PlotError>,
) -> Result<Vec<u8>, PlotError> {
    checked_size(w.into(), h.into())?;
    ensure_font()?;
    // `checked_size` bounds w * h * 3 well below usize::MAX.
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let backend = BitMapBackend::<RGBPixel>::with_buffer_and_format(&mut buf, (w, h))
            .map_err(|e| PlotError::Draw(e.to_string()))?;
        let root = backend.into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        draw(&root)?;
        root.present().map_err(draw_error)?;
    }
    let mut png = Vec::new();
    PngEncoder::new(&mut png).write_image(&buf, w, h, image::ExtendedColorType::Rgb8)?;
    Ok(png)
}

/// Draws one scatter panel into `cell`.
fn draw_panel(
    cell: &Area<'_>,
    panel: &Panel,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    panel_size: u32,
) -> Result<(), PlotError> {
    let mut chart = ChartBuilder::on(cell)
        .caption(panel.title.as_str(), (FONT, 18).into_font().color(&INK))
        .margin(10)
        .margin_right(16)
        .x_label_area_size(26)
        .y_label_area_size(46)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_error)?;
    let x_fmt = |v: &f64| format_tick(*v, x1 - x0);
    let y_fmt = |v: &f64| format_tick(*v, y1 - y0);
    chart
        .configure_mesh()
        .label_style((FONT, 14).into_font().color(&MUTED))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_labels(5)
        .y_labels(5)
        .bold_line_style(GRID.stroke_width(1))
        .light_line_style(TRANSPARENT)
        .axis_style(MUTED.stroke_width(1))
        .draw()
        .map_err(draw_error)?;

    let inside = |p: &&[f64; 2]| p[0] >= x0 && p[0] <= x1 && p[1] >= y0 && p[1] <= y1;
    let shown: Vec<(f64, f64)> = panel
        .points
        .iter()
        .filter(inside)
        .map(|p| (p[0], p[1]))
        .collect();
    // Translucent enough that 5000 points show their density, opaque enough
    // that 50 remain visible.
    let alpha = (12.0 / (shown.len().max(1) as f64).sqrt()).clamp(0.18, 0.85);
    let radius = if panel_size >= 300 { 2 } else { 1 };
    let style = DOT.mix(alpha).filled();
    chart
        .draw_series(shown.iter().map(|&p| Circle::new(p, radius, style)))
        .map_err(draw_error)?;

    let hidden = panel.points.len() - shown.len();
    let note = match (hidden, panel.points.len()) {
        (_, 0) => Some("no points".to_string()),
        (0, _) => None,
        (n, total) => Some(format!("{n} of {total} not shown")),
    };
    if let Some(note) = note {
        let area = chart.plotting_area().strip_coord_spec();
        let (pw, ph) = area.dim_in_pixel();
        let style = (FONT, 14)
            .into_font()
            .color(&MUTED)
            .pos(Pos::new(HPos::Right, VPos::Bottom));
        area.draw(&Text::new(note, (pw as i32 - 6, ph as i32 - 6), style))
            .map_err(draw_error)?;
    }
    Ok(())
}

/// Geometry of the legend.
const LEGEND_FONT: u32 = 16;
/// Length of the line sample before each legend entry.
const LEGEND_SAMPLE: i32 = 30;
/// Vertical distance between legend entries.
const LEGEND_ROW: i32 = 26;

/// Width of the legend column: the widest name plus the line sample,
/// at most 40 % of the image.
fn legend_width(area: &Area<'_>, series: &[Series], image_w: u32) -> Result<u32, PlotError> {
    let font = (FONT, LEGEND_FONT).into_font().color(&INK);
    let mut widest = 0;
    for s in series {
        let (tw, _) = area
            .estimate_text_size(&s.name, &font)
            .map_err(draw_error)?;
        widest = widest.max(tw);
    }
    let want = widest + LEGEND_SAMPLE as u32 + 40;
    Ok(want.min(image_w * 2 / 5))
}

/// Draws the legend entries into `area`, starting `top` pixels down; rows
/// that do not fit are summarised as "+N more".
fn draw_legend(area: &Area<'_>, series: &[Series], top: i32) -> Result<(), PlotError> {
    let (_, h) = area.dim_in_pixel();
    let text = (FONT, LEGEND_FONT)
        .into_font()
        .color(&INK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let fits = ((h as i32 - top - LEGEND_ROW) / LEGEND_ROW).max(1) as usize;
    let shown = if series.len() > fits {
        fits - 1
    } else {
        series.len()
    };
    let mut y = top + LEGEND_ROW / 2;
    for (i, s) in series.iter().enumerate().take(shown) {
        let style = series_style(i);
        let sample = [(4, y), (4 + LEGEND_SAMPLE, y)];
        if i < PALETTE.len() {
            area.draw(&PathElement::new(sample, style.stroke_width(3)))
                .map_err(draw_error)?;
        } else {
            for k in 0..3 {
                let x = 4 + k * 12;
                area.draw(&PathElement::new(
                    [(x, y), (x + 7, y)],
                    style.stroke_width(3),
                ))
                .map_err(draw_error)?;
            }
        }
        area.draw(&Text::new(
            s.name.as_str(),
            (LEGEND_SAMPLE + 12, y),
            text.clone(),
        ))
        .map_err(draw_error)?;
        y += LEGEND_ROW;
    }
    if shown < series.len() {
        let more = format!("+{} more", series.len() - shown);
        area.draw(&Text::new(
            more,
            (LEGEND_SAMPLE + 12, y),
            text.color(&MUTED),
        ))
        .map_err(draw_error)?;
    }
    Ok(())
}

/// Line style of series `i`.
fn series_style(i: usize) -> ShapeStyle {
    PALETTE[i % PALETTE.len()].stroke_width(2)
}

/// An axis-aligned clipping rectangle in data coordinates.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

/// Clips the segment `a`–`b` to `r` (Liang–Barsky); `None` if nothing of
/// it is inside.
fn clip_segment(a: (f64, f64), b: (f64, f64), r: &Rect) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    if !dx.is_finite() || !dy.is_finite() {
        return None;
    }
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - r.x0),
        (dx, r.x1 - a.0),
        (-dy, a.1 - r.y0),
        (dy, r.y1 - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
            if t0 > t1 {
                return None;
            }
        }
    }
    let at = |t: f64| (a.0 + t * dx, a.1 + t * dy);
    Some((at(t0), at(t1)))
}

/// Splits `points` into polylines inside `r`: breaks at non-finite points,
/// clips segments at the rectangle's edges. Also returns the finite
/// points inside `r` that have no finite neighbour, which a line cannot
/// show and are drawn as dots instead.
#[allow(clippy::type_complexity)]
fn clip_polylines(points: &[(f64, f64)], r: &Rect) -> (Vec<Vec<(f64, f64)>>, Vec<(f64, f64)>) {
    let finite = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let inside = |p: &(f64, f64)| p.0 >= r.x0 && p.0 <= r.x1 && p.1 >= r.y0 && p.1 <= r.y1;
    let mut lines = Vec::new();
    let mut dots = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    let mut prev: Option<(f64, f64)> = None;
    for (i, p) in points.iter().enumerate() {
        if !finite(p) {
            if current.len() >= 2 {
                lines.push(std::mem::take(&mut current));
            }
            current.clear();
            prev = None;
            continue;
        }
        let next_finite = points.get(i + 1).is_some_and(finite);
        if prev.is_none() && !next_finite && inside(p) {
            dots.push(*p);
        }
        if let Some(q) = prev {
            match clip_segment(q, *p, r) {
                Some((s, e)) => {
                    if current.last() != Some(&s) {
                        if current.len() >= 2 {
                            lines.push(std::mem::take(&mut current));
                        }
                        current.clear();
                        current.push(s);
                    }
                    current.push(e);
                }
                None => {
                    if current.len() >= 2 {
                        lines.push(std::mem::take(&mut current));
                    }
                    current.clear();
                }
            }
        }
        prev = Some(*p);
    }
    if current.len() >= 2 {
        lines.push(current);
    }
    (lines, dots)
}

/// Smallest and largest of `values`, if any.
fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// `(lo, hi)` if it is a finite, increasing interval whose width is finite
/// and resolvable in floating point.
fn checked_range(axis: &'static str, lo: f64, hi: f64) -> Result<(f64, f64), PlotError> {
    let span = hi - lo;
    let scale = lo.abs().max(hi.abs());
    if lo.is_finite() && hi.is_finite() && span.is_finite() && span > scale * 1e-12 {
        Ok((lo, hi))
    } else {
        Err(PlotError::Range { axis, lo, hi })
    }
}

/// Like [`checked_range`], but first widens an empty or unresolvably thin
/// interval (all values equal) about its centre.
fn widen_degenerate(axis: &'static str, lo: f64, hi: f64) -> Result<(f64, f64), PlotError> {
    let scale = lo.abs().max(hi.abs());
    if hi - lo > scale * 1e-9 {
        return checked_range(axis, lo, hi);
    }
    let mid = 0.5 * lo + 0.5 * hi;
    let half = if scale > 0.0 { 0.1 * scale } else { 1.0 };
    checked_range(axis, mid - half, mid + half)
}

/// The `q`-quantile of sorted, non-empty `v`, interpolating linearly.
fn quantile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let i = pos.floor() as usize;
    let j = (i + 1).min(v.len() - 1);
    let f = pos - i as f64;
    v[i] + f * (v[j] - v[i])
}

/// A tick label for `v` on an axis spanning `span`: as many decimals as the
/// span needs, trailing zeros dropped, scientific notation for very large
/// or very small magnitudes.
fn format_tick(v: f64, span: f64) -> String {
    if v == 0.0 || v.abs() < span * 1e-9 {
        return "0".to_string();
    }
    let mag = v.abs();
    if !(1e-4..1e6).contains(&mag) || span < 1e-4 {
        let s = format!("{v:.2e}");
        return match s.split_once('e') {
            Some((m, e)) => {
                let m = m.trim_end_matches('0').trim_end_matches('.');
                format!("{m}e{e}")
            }
            None => s,
        };
    }
    let decimals = (2.0 - span.log10().floor()).clamp(0.0, 8.0) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".to_string() } else { s }
}

/// An image-size error unless `w`×`h` is within the limits.
fn checked_size(w: u64, h: u64) -> Result<(u32, u32), PlotError> {
    if w == 0 || h == 0 {
        return Err(size_error(w, h, "empty"));
    }
    if w > u64::from(MAX_SIDE) || h > u64::from(MAX_SIDE) || w * h > MAX_PIXELS {
        return Err(size_error(w, h, "larger than the limit"));
    }
    // Both sides are at most MAX_SIDE, so they fit u32.
    Ok((w as u32, h as u32))
}

/// A [`PlotError::Size`].
fn size_error(width: u64, height: u64, reason: &'static str) -> PlotError {
    PlotError::Size {
        width,
        height,
        reason,
    }
}

/// A renderer error as a [`PlotError::Draw`].
fn draw_error(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes PNG bytes to RGB.
    fn decode(png: &[u8]) -> image::RgbImage {
        image::load_from_memory(png).expect("valid PNG").to_rgb8()
    }

    /// Pixels close to `c`.
    fn count_near(img: &image::RgbImage, c: RGBColor, tol: i32) -> usize {
        img.pixels()
            .filter(|p| {
                (p[0] as i32 - c.0 as i32).abs() <= tol
                    && (p[1] as i32 - c.1 as i32).abs() <= tol
                    && (p[2] as i32 - c.2 as i32).abs() <= tol
            })
            .count()
    }

    /// Bluish pixels: scatter dots blended over white.
    fn count_bluish(img: &image::RgbImage) -> usize {
        img.pixels()
            .filter(|p| p[2] as i32 - p[0] as i32 > 30 && p[2] > 150)
            .count()
    }

    fn sine(n: usize, phase: f64) -> Vec<(f64, f64)> {
        (0..=n)
            .map(|i| {
                let t = i as f64 / n as f64;
                (t, (6.0 * t + phase).sin())
            })
            .collect()
    }

    /// Deterministic pseudo-Gaussian cloud (sum of uniforms from an LCG).
    fn cloud(n: usize, seed: u64) -> Vec<[f64; 2]> {
        let mut s = seed;
        let mut u = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let g = |u: &mut dyn FnMut() -> f64| (0..4).map(|_| u()).sum::<f64>() - 2.0;
                [g(&mut u), 0.5 * g(&mut u)]
            })
            .collect()
    }

    #[test]
    fn line_plot_png_has_the_size_and_series_colours() {
        let mut plot = LinePlot::new("Sines", "t", "y");
        plot.push("first", sine(200, 0.0));
        plot.push("second", sine(200, 1.0));
        let img = decode(&plot.render_png().unwrap());
        assert_eq!(img.dimensions(), LinePlot::DEFAULT_SIZE);
        assert!(count_near(&img, PALETTE[0], 10) > 500);
        assert!(count_near(&img, PALETTE[1], 10) > 500);
        // White background.
        assert_eq!(img.get_pixel(2, 2).0, [255, 255, 255]);
    }

    #[test]
    fn line_plot_skips_non_finite_points_and_clips_to_the_y_range() {
        let mut plot = LinePlot::new("Diverging", "t", "λ(t)");
        plot.width = 640;
        plot.height = 400;
        let mut pts: Vec<(f64, f64)> = (1..100)
            .map(|i| {
                let t = i as f64 / 100.0;
                (t, ((1.0 - t) / t).ln() * 2.0)
            })
            .collect();
        pts.insert(0, (0.0, f64::INFINITY));
        pts.push((1.0, f64::NEG_INFINITY));
        pts.insert(50, (0.5, f64::NAN));
        plot.push("logit", pts);
        plot.y_range = Some((-5.0, 5.0));
        let img = decode(&plot.render_png().unwrap());
        assert_eq!(img.dimensions(), (640, 400));
        assert!(count_near(&img, PALETTE[0], 10) > 200);
        // The automatic range ignores the infinities as well.
        plot.y_range = None;
        let ((x0, x1), (y0, y1)) = plot.resolved_ranges().unwrap();
        assert!([x0, x1, y0, y1].iter().all(|v| v.is_finite()));
        assert!(x0 < x1 && y0 < y1);
        plot.render_png().unwrap();
    }

    #[test]
    fn line_plot_errors_instead_of_panicking() {
        let mut plot = LinePlot::new("t", "x", "y");
        assert!(matches!(plot.render_png(), Err(PlotError::NoSeries)));
        plot.push("nan", vec![(f64::NAN, 1.0), (0.0, f64::INFINITY)]);
        plot.push("empty", vec![]);
        assert!(matches!(plot.render_png(), Err(PlotError::NoFinitePoints)));
        plot.series[1].points = vec![(0.0, 1.0), (1.0, 2.0)];
        plot.y_range = Some((1.0, 1.0));
        assert!(matches!(plot.render_png(), Err(PlotError::Range { .. })));
        plot.y_range = Some((0.0, f64::NAN));
        assert!(matches!(plot.render_png(), Err(PlotError::Range { .. })));
        plot.y_range = None;
        plot.width = 0;
        assert!(matches!(plot.render_png(), Err(PlotError::Size { .. })));
        plot.width = 100_000;
        assert!(matches!(plot.render_png(), Err(PlotError::Size { .. })));
        // A constant series, a single point: drawable.
        plot.width = 400;
        plot.height = 300;
        plot.series[1].points = vec![(0.5, 2.0)];
        decode(&plot.render_png().unwrap());
    }

    #[test]
    fn many_series_and_a_long_name_still_render() {
        let mut plot = LinePlot::new("", "t", "y");
        for i in 0..14 {
            plot.push(format!("series number {i}"), sine(50, i as f64 * 0.4));
        }
        plot.series[3].name = "a name far too long for any sensible legend column".repeat(3);
        let img = decode(&plot.render_png().unwrap());
        assert_eq!(img.dimensions(), LinePlot::DEFAULT_SIZE);
    }

    #[test]
    fn scatter_grid_has_the_expected_size_and_dots() {
        let panels = vec![
            Panel::new("data", cloud(2000, 1)),
            Panel::new("solver A", cloud(2000, 2)),
            Panel::new("solver B", cloud(2000, 3)),
        ];
        let mut grid = ScatterGrid::new(panels, 2);
        grid.panel_size = 200;
        let img = decode(&grid.render_png().unwrap());
        assert_eq!(img.dimensions(), (400, 400));
        assert!(count_bluish(&img) > 1000);
        grid.title = "Grid".into();
        assert_eq!(
            grid.dimensions().unwrap(),
            (400, 400 + ScatterGrid::TITLE_BAND)
        );
        grid.columns = 7;
        assert_eq!(
            grid.dimensions().unwrap(),
            (600, 200 + ScatterGrid::TITLE_BAND)
        );
        grid.columns = 0;
        assert!(matches!(grid.render_png(), Err(PlotError::NoColumns)));
    }

    #[test]
    fn scatter_range_is_robust_to_outliers_and_non_finite_points() {
        let mut pts = cloud(1000, 4);
        pts.push([1e9, -1e9]);
        pts.push([f64::NAN, 0.0]);
        pts.push([0.0, f64::INFINITY]);
        let grid = ScatterGrid::single(Panel::new("with outliers", pts));
        let ((x0, x1), (y0, y1)) = grid.resolved_range().unwrap();
        assert!(x0 > -5.0 && x1 < 5.0 && y0 > -5.0 && y1 < 5.0);
        assert!(((x1 - x0) - (y1 - y0)).abs() < 1e-9, "square range");
        let img = decode(&grid.render_png().unwrap());
        assert_eq!(img.dimensions(), (600, 600));
        assert!(count_bluish(&img) > 500);
    }

    #[test]
    fn scatter_errors_instead_of_panicking() {
        let grid = ScatterGrid::new(vec![], 2);
        assert!(matches!(grid.render_png(), Err(PlotError::NoPanels)));
        let nan = Panel::new("nan", vec![[f64::NAN, 1.0], [0.0, f64::NEG_INFINITY]]);
        let grid = ScatterGrid::new(vec![nan.clone(), Panel::new("empty", vec![])], 2);
        assert!(matches!(grid.render_png(), Err(PlotError::NoFinitePoints)));
        let mut grid = ScatterGrid::new(vec![nan, Panel::new("one", vec![[1.0, 1.0]])], 2);
        grid.panel_size = 5;
        assert!(matches!(grid.render_png(), Err(PlotError::Size { .. })));
        grid.panel_size = 160;
        // One point: a degenerate range, widened.
        decode(&grid.render_png().unwrap());
        grid.shared_range = Some(((0.0, 1.0), (2.0, f64::INFINITY)));
        assert!(matches!(grid.render_png(), Err(PlotError::Range { .. })));
    }

    #[test]
    fn clipping_breaks_lines_at_gaps_and_edges() {
        let r = Rect {
            x0: 0.0,
            x1: 1.0,
            y0: 0.0,
            y1: 1.0,
        };
        let pts = [
            (0.0, 0.0),
            (0.5, 2.0), // leaves through y = 1
            (1.0, 0.0), // re-enters
            (f64::NAN, 0.0),
            (0.2, 0.2), // isolated: a dot
            (f64::INFINITY, 0.0),
        ];
        let (lines, dots) = clip_polylines(&pts, &r);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], vec![(0.0, 0.0), (0.25, 1.0)]);
        assert_eq!(lines[1], vec![(0.75, 1.0), (1.0, 0.0)]);
        assert_eq!(dots, vec![(0.2, 0.2)]);
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(format_tick(0.30000000000000004, 1.0), "0.3");
        assert_eq!(format_tick(-10.0, 40.0), "-10");
        assert_eq!(format_tick(2.5e-17, 1.0), "0");
        assert_eq!(format_tick(1.5e7, 1e8), "1.5e7");
        assert_eq!(format_tick(0.0015, 0.01), "0.0015");
    }
}

#[cfg(test)]
mod preview_tmp {
    use super::*;

    #[test]
    fn write_previews() {
        let n = 400;
        let ts: Vec<f64> = (0..=n).map(|i| i as f64 / n as f64).collect();
        let lam = |f: &dyn Fn(f64) -> f64| -> Vec<(f64, f64)> {
            ts.iter()
                .map(|&t| (t, f(t)))
                .filter(|p| p.1.is_finite())
                .collect()
        };
        let vp = |b0: f64, b1: f64| {
            move |t: f64| {
                let la2 = -(b0 * t + 0.5 * (b1 - b0) * t * t);
                la2 - (-la2.exp()).ln_1p()
            }
        };
        let mut plot = LinePlot::new("Noise schedules: log-SNR λ(t)", "t", "λ(t) = log(α²/σ²)");
        plot.push("vp_linear", lam(&vp(0.1, 20.0)));
        plot.push(
            "vp_cosine",
            lam(&|t| {
                -2.0 * (std::f64::consts::FRAC_PI_2 * (t + 0.008) / 1.008)
                    .tan()
                    .ln()
            }),
        );
        plot.push(
            "sub_vp",
            lam(&|t| {
                let la2: f64 = -(0.1 * t + 9.95 * t * t);
                la2 - 2.0 * (-la2.exp()).ln_1p()
            }),
        );
        plot.push(
            "ve_geometric",
            lam(&|t| -2.0 * (0.01f64.ln() + t * (5000f64).ln())),
        );
        plot.push(
            "edm",
            lam(&|t| {
                let r = 7.0;
                let s = (0.002f64.powf(1.0 / r)
                    + t * (80f64.powf(1.0 / r) - 0.002f64.powf(1.0 / r)))
                .powf(r);
                -2.0 * s.ln()
            }),
        );
        plot.push("flow", lam(&|t| 2.0 * ((1.0 - t) / t).ln()));
        plot.push(
            "flow_shift3",
            lam(&|t| 2.0 * ((1.0 - t) / t).ln() - 2.0 * 3f64.ln()),
        );
        plot.push("scaled_linear", lam(&vp(0.085 * 10.0, 12.0)));
        plot.push("sigmoid", lam(&|t| -12.0 * (t - 0.5) * 2.0));
        plot.push(
            "laplace",
            lam(&|t| -2.0 * (t - 0.5).signum() * (1.0 - 2.0 * (t - 0.5).abs()).ln() * 3.0),
        );
        plot.y_range = Some((-20.0, 20.0));
        std::fs::write(
            "/tmp/plot-preview-schedules.png",
            plot.render_png().unwrap(),
        )
        .unwrap();

        plot.push("eleventh dashed", lam(&|t| 10.0 - 20.0 * t));
        plot.push("twelfth dashed", lam(&|t| -10.0 + 15.0 * t * t));
        plot.y_range = None;
        plot.width = 800;
        plot.height = 500;
        std::fs::write(
            "/tmp/plot-preview-auto-range.png",
            plot.render_png().unwrap(),
        )
        .unwrap();

        // Two moons-ish.
        let mut s = 7u64;
        let mut u = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut moons = Vec::new();
        for i in 0..5000 {
            let a = std::f64::consts::PI * u();
            let g = (u() + u() + u() - 1.5) * 0.12;
            let p = if i % 2 == 0 {
                [a.cos() + g, a.sin() + g]
            } else {
                [1.0 - a.cos() + g, 0.5 - a.sin() - g]
            };
            moons.push(p);
        }
        let noisy = |k: f64, u: &mut dyn FnMut() -> f64| {
            moons
                .iter()
                .map(|p| [p[0] + k * (u() - 0.5), p[1] + k * (u() - 0.5)])
                .collect::<Vec<_>>()
        };
        let mut panels = vec![Panel::new("data (5000)", moons.clone())];
        for (solver, k) in [("Euler", 0.8), ("Heun", 0.3), ("DPM-Solver++(2M)", 0.15)] {
            for nfe in [10, 50] {
                let mut pts = noisy(k * 10.0 / nfe as f64 * 3.0, &mut u);
                if solver == "Euler" && nfe == 10 {
                    pts.push([40.0, -30.0]);
                    pts.push([f64::NAN, 0.0]);
                }
                panels.push(Panel::new(format!("{solver}, NFE {nfe}"), pts));
            }
        }
        let mut grid = ScatterGrid::new(panels, 4);
        grid.title = "two moons: solver × NFE".into();
        std::fs::write("/tmp/plot-preview-grid.png", grid.render_png().unwrap()).unwrap();
        let single = ScatterGrid::single(Panel::new("samples (dims 0, 1)", moons.clone()));
        std::fs::write("/tmp/plot-preview-single.png", single.render_png().unwrap()).unwrap();
        let few = ScatterGrid::single(Panel::new("50 points", moons[..50].to_vec()));
        std::fs::write("/tmp/plot-preview-few.png", few.render_png().unwrap()).unwrap();
    }
}

#[cfg(test)]
mod preview_crop_tmp {
    #[test]
    fn crop_previews() {
        let crops: Vec<(String, u32, u32, u32, u32, u32)> = std::env::var("CROPS")
            .unwrap_or_default()
            .split(';')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let v: Vec<&str> = s.split(',').collect();
                (
                    v[0].to_string(),
                    v[1].parse().unwrap(),
                    v[2].parse().unwrap(),
                    v[3].parse().unwrap(),
                    v[4].parse().unwrap(),
                    v[5].parse().unwrap(),
                )
            })
            .collect();
        for (i, (path, x, y, w, h, k)) in crops.into_iter().enumerate() {
            let img = image::open(&path).unwrap().to_rgb8();
            let c = image::imageops::crop_imm(&img, x, y, w, h).to_image();
            let r = image::imageops::resize(&c, w * k, h * k, image::imageops::FilterType::Nearest);
            r.save(format!(
                "/tmp/crop-{}-{i}.png",
                std::env::var("TAG").unwrap_or_default()
            ))
            .unwrap();
        }
    }
}
