//! PNG charts for the command line: line plots (one curve per series, with a
//! legend) and grids of scatter panels.
//!
//! Everything renders into memory and comes back as PNG bytes; nothing here
//! touches the file system. The caller writes the bytes with
//! [`crate::output::write_file`], which keeps the write atomic and refuses
//! to replace an existing file without `--force`.
//!
//! Geometry (grid, axes, curves, dots) is drawn by `plotters` at twice the
//! final resolution and box-filtered down, which anti-aliases it; text is
//! laid out and rasterised here with `ab_glyph` at the final resolution, in
//! DejaVu Sans embedded in the binary (`assets/DejaVuSans.ttf`, licence in
//! `assets/LICENSE-DejaVu.txt`), so charts look the same on machines
//! without system fonts.
//!
//! Input is never trusted: non-finite points are skipped (a line is broken
//! there), points outside the plotted ranges are clipped or left out, and
//! every degenerate case is a [`PlotError`] rather than a panic.

// `ScatterGrid` and parts of the API are for subcommands still to come.
#![allow(dead_code)]

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use image::ImageEncoder;
use image::codecs::png::PngEncoder;
use plotters::backend::RGBPixel;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// DejaVu Sans, embedded so that rendering needs no system fonts.
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Largest width or height of an image, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest number of pixels in an image (120 MB of RGB).
pub const MAX_PIXELS: u64 = 40_000_000;
/// Images up to this many pixels are drawn at twice the resolution and
/// downsampled; larger ones are drawn directly, without anti-aliasing.
const SUPERSAMPLE_MAX_PIXELS: u64 = 8_000_000;

/// Text and axis colour.
const INK: RGBColor = RGBColor(34, 34, 34);
/// Colour of tick labels, notes and panel axes.
const MUTED: RGBColor = RGBColor(100, 100, 100);
/// Colour of the grid lines.
const GRID: RGBColor = RGBColor(226, 226, 226);
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

/// `((x_lo, x_hi), (y_lo, y_hi))`: the ranges of both axes.
pub type XyRange = ((f64, f64), (f64, f64));

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
    /// The embedded font could not be loaded.
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
    /// breaks the line there; an isolated finite point shows as a dot.
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
    /// Label of the horizontal axis; empty for none.
    pub x_label: String,
    /// Label of the vertical axis; empty for none.
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
    pub fn resolved_ranges(&self) -> Result<XyRange, PlotError> {
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
        checked_size(w.into(), h.into())?;
        let (xr, yr) = self.resolved_ranges()?;
        let face = face()?;
        render(w, h, |canvas| self.draw(canvas, face, xr, yr))
    }

    /// Lays out and draws the whole plot.
    fn draw(
        &self,
        canvas: &mut Canvas<'_, '_>,
        face: &FontRef<'static>,
        (x0, x1): (f64, f64),
        (y0, y1): (f64, f64),
    ) -> Result<(), PlotError> {
        const PAD: f64 = 16.0;
        const TITLE: f32 = 22.0;
        const DESC: f32 = 17.0;
        const TICK: f32 = 15.0;
        const LEGEND: f32 = 16.0;
        const SAMPLE: f64 = 30.0;
        const ROW: f64 = 26.0;
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let lh = |size: f32| line_height(face, size);

        // Vertical layout.
        let mut top = PAD;
        if !self.title.is_empty() {
            let title = ellipsize(face, &self.title, TITLE, w - 2.0 * PAD);
            canvas.text(Label::new(title, w / 2.0, top, TITLE, INK).anchor(0.5, 0.0));
            top += lh(TITLE) + 10.0;
        }
        top += lh(TICK) / 2.0; // room for the top tick label
        let x_desc_h = if self.x_label.is_empty() {
            0.0
        } else {
            lh(DESC) + 6.0
        };
        let bottom = h - PAD - x_desc_h - lh(TICK) - 10.0;
        let y_ticks = nice_ticks(y0, y1, ((bottom - top) / 55.0) as usize);
        let y_labels: Vec<String> = y_ticks
            .0
            .iter()
            .map(|&v| format_tick(v, y_ticks.1))
            .collect();

        // Horizontal layout: y description, tick labels, chart, legend.
        let widest_tick = y_labels
            .iter()
            .map(|s| text_width(face, s, TICK))
            .fold(0.0, f64::max);
        let y_desc_w = if self.y_label.is_empty() {
            0.0
        } else {
            lh(DESC) + 10.0
        };
        let left = (PAD + y_desc_w + widest_tick + 10.0).round();
        let names: Vec<f64> = self
            .series
            .iter()
            .map(|s| text_width(face, &s.name, LEGEND))
            .collect();
        let widest_name = names.iter().copied().fold(0.0, f64::max);
        let legend_w = (SAMPLE + 10.0 + widest_name + 2.0 * PAD).min(0.4 * w);
        let right = (w - legend_w).round();
        let (top, bottom) = (top.round(), bottom.round());
        if right - left < 80.0 || bottom - top < 60.0 {
            return Err(size_error(
                self.width.into(),
                self.height.into(),
                "too small for the labels",
            ));
        }
        let frame = Frame::new(left, right, top, bottom, (x0, x1), (y0, y1));
        let x_ticks = nice_ticks(x0, x1, ((right - left) / 70.0) as usize);

        // Grid, then data, then axes.
        canvas.grid(&frame, &x_ticks.0, &y_ticks.0)?;
        let rect = Rect { x0, x1, y0, y1 };
        for (i, series) in self.series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let dashed = i >= PALETTE.len();
            let (lines, dots) = clip_polylines(&series.points, &rect);
            for line in lines {
                let px: Vec<(f64, f64)> = line.iter().map(|&p| frame.map(p)).collect();
                canvas.polyline(&px, colour, 2.0, dashed)?;
            }
            for p in dots {
                canvas.dot(frame.map(p), 2.5, colour, 1.0)?;
            }
        }
        canvas.vline(left - 1.0, top, bottom + 1.0, INK)?;
        canvas.hline(left - 1.0, right, bottom, INK)?;

        // Ticks and their labels.
        for (&v, label) in y_ticks.0.iter().zip(&y_labels) {
            let y = frame.py(v);
            canvas.hline(left - 6.0, left - 1.0, y, INK)?;
            canvas.text(Label::new(label, left - 9.0, y + 0.5, TICK, INK).anchor(1.0, 0.5));
        }
        for &v in &x_ticks.0 {
            let x = frame.px(v);
            canvas.vline(x, bottom, bottom + 5.0, INK)?;
            let label = format_tick(v, x_ticks.1);
            canvas.text(Label::new(label, x + 0.5, bottom + 8.0, TICK, INK).anchor(0.5, 0.0));
        }
        if !self.x_label.is_empty() {
            let y = bottom + 8.0 + lh(TICK) + 6.0;
            let text = ellipsize(face, &self.x_label, DESC, right - left);
            let label = Label::new(text, (left + right) / 2.0, y, DESC, INK);
            canvas.text(label.anchor(0.5, 0.0));
        }
        if !self.y_label.is_empty() {
            let x = PAD + lh(DESC) / 2.0;
            let text = ellipsize(face, &self.y_label, DESC, bottom - top);
            let label = Label::new(text, x, (top + bottom) / 2.0, DESC, INK);
            canvas.text(label.vertical());
        }

        // Legend, top-aligned with the chart; "+N more" when it overflows.
        let lx = right + PAD;
        let text_room = w - lx - SAMPLE - 10.0 - PAD / 2.0;
        let fits = (((bottom - top) / ROW) as usize).max(1);
        let shown = if self.series.len() > fits {
            fits - 1
        } else {
            self.series.len()
        };
        let mut y = top + ROW / 2.0;
        for (i, series) in self.series.iter().enumerate().take(shown) {
            let colour = PALETTE[i % PALETTE.len()];
            let sample = [(lx, y), (lx + SAMPLE, y)];
            canvas.polyline(&sample, colour, 3.0, i >= PALETTE.len())?;
            let name = ellipsize(face, &series.name, LEGEND, text_room);
            let label = Label::new(name, lx + SAMPLE + 10.0, y, LEGEND, INK);
            canvas.text(label.anchor(0.0, 0.5));
            y += ROW;
        }
        if shown < self.series.len() {
            let more = format!("+{} more", self.series.len() - shown);
            let label = Label::new(more, lx + SAMPLE + 10.0, y, LEGEND, MUTED);
            canvas.text(label.anchor(0.0, 0.5));
        }
        Ok(())
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
/// `title` is not empty. Each panel's plotting area is square, and dots are
/// small and translucent, so thousands of points read as a density.
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
    pub shared_range: Option<XyRange>,
}

impl ScatterGrid {
    /// Default side of a panel in pixels.
    pub const DEFAULT_PANEL_SIZE: u32 = 360;
    /// Side of the panel of [`ScatterGrid::single`] in pixels.
    pub const SINGLE_PANEL_SIZE: u32 = 600;
    /// Smallest side of a panel in pixels.
    pub const MIN_PANEL_SIZE: u32 = 160;
    /// Height of the band holding the grid's title, in pixels.
    pub const TITLE_BAND: u32 = 48;

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

    /// A single scatter plot: a one-panel grid of side
    /// [`ScatterGrid::SINGLE_PANEL_SIZE`].
    pub fn single(panel: Panel) -> Self {
        Self {
            panel_size: Self::SINGLE_PANEL_SIZE,
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
    /// padded by 10 % on each side and widened to a square (the plotting
    /// areas are square, so shapes are not distorted). Outliers therefore
    /// do not squash the plot; they are counted in a corner note instead.
    pub fn resolved_range(&self) -> Result<XyRange, PlotError> {
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
        let (xr, yr) = self.resolved_range()?;
        let (cols, _) = self.layout()?;
        let face = face()?;
        render(w, h, |canvas| {
            let mut top = 0.0;
            if !self.title.is_empty() {
                let band = f64::from(Self::TITLE_BAND);
                let title = ellipsize(face, &self.title, 22.0, f64::from(w) - 32.0);
                let label = Label::new(title, f64::from(w) / 2.0, band / 2.0, 22.0, INK);
                canvas.text(label.anchor(0.5, 0.5));
                top = band;
            }
            let ps = f64::from(self.panel_size);
            for (i, panel) in self.panels.iter().enumerate() {
                let (row, col) = (i / cols, i % cols);
                let origin = (col as f64 * ps, top + row as f64 * ps);
                draw_panel(canvas, face, panel, origin, ps, xr, yr)?;
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

/// Draws one scatter panel in the `side`-pixel square at `origin`.
fn draw_panel(
    canvas: &mut Canvas<'_, '_>,
    face: &FontRef<'static>,
    panel: &Panel,
    (ox, oy): (f64, f64),
    side: f64,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> Result<(), PlotError> {
    const TITLE: f32 = 17.0;
    const TICK: f32 = 14.0;
    const NOTE: f32 = 14.0;
    let lh = |size: f32| line_height(face, size);
    let top = oy + 10.0 + lh(TITLE) + 8.0;
    let bottom = oy + side - 10.0 - lh(TICK) - 8.0;
    let n_ticks = ((side - 80.0) / 45.0) as usize;
    let x_ticks = nice_ticks(x0, x1, n_ticks);
    let y_ticks = nice_ticks(y0, y1, n_ticks);
    let y_labels: Vec<String> = y_ticks
        .0
        .iter()
        .map(|&v| format_tick(v, y_ticks.1))
        .collect();
    let widest_tick = y_labels
        .iter()
        .map(|s| text_width(face, s, TICK))
        .fold(0.0, f64::max);
    let left = ox + 10.0 + widest_tick + 9.0;
    let right = ox + side - 14.0;
    // A square plotting area, centred in the room left by the labels.
    let plot = (right - left).min(bottom - top).max(10.0).round();
    let left = (left + ((right - left) - plot) / 2.0).round();
    let top = top.round();
    let (right, bottom) = (left + plot, top + plot);
    let frame = Frame::new(left, right, top, bottom, (x0, x1), (y0, y1));

    canvas.text(
        Label::new(
            ellipsize(face, &panel.title, TITLE, side - 16.0),
            (left + right) / 2.0,
            oy + 10.0,
            TITLE,
            INK,
        )
        .anchor(0.5, 0.0),
    );
    canvas.grid(&frame, &x_ticks.0, &y_ticks.0)?;

    let inside = |p: &&[f64; 2]| p[0] >= x0 && p[0] <= x1 && p[1] >= y0 && p[1] <= y1;
    let shown: Vec<(f64, f64)> = panel
        .points
        .iter()
        .filter(inside)
        .map(|p| frame.map((p[0], p[1])))
        .collect();
    // Dots grow with the panel and for sparse data; their opacity falls
    // with the ink they would lay down, so that 5000 points show a density
    // and 50 stand out.
    let n = shown.len().max(1) as f64;
    let radius = match side {
        s if s < 300.0 => 1.25,
        s if s < 500.0 => 1.75,
        _ => 2.25,
    } + if n < 300.0 { 0.75 } else { 0.0 };
    let ink = n * std::f64::consts::PI * radius * radius;
    let alpha = (0.08 * plot * plot / ink).clamp(0.12, 0.85);
    for &p in &shown {
        canvas.dot(p, radius, DOT, alpha)?;
    }

    canvas.vline(left - 1.0, top, bottom + 1.0, MUTED)?;
    canvas.hline(left - 1.0, right, bottom, MUTED)?;
    for (&v, label) in y_ticks.0.iter().zip(&y_labels) {
        let y = frame.py(v);
        canvas.hline(left - 5.0, left - 1.0, y, MUTED)?;
        canvas.text(Label::new(label, left - 8.0, y + 0.5, TICK, MUTED).anchor(1.0, 0.5));
    }
    for &v in &x_ticks.0 {
        let x = frame.px(v);
        canvas.vline(x, bottom, bottom + 4.0, MUTED)?;
        let label = format_tick(v, x_ticks.1);
        canvas.text(Label::new(label, x + 0.5, bottom + 7.0, TICK, MUTED).anchor(0.5, 0.0));
    }

    let hidden = panel.points.len() - shown.len();
    let note = match (hidden, panel.points.len()) {
        (_, 0) => Some("no points".to_string()),
        (0, _) => None,
        (n, total) => Some(format!("{n} of {total} not shown")),
    };
    if let Some(note) = note {
        let label = Label::new(note, right - 6.0, bottom - 6.0, NOTE, MUTED);
        canvas.text(label.anchor(1.0, 1.0));
    }
    Ok(())
}

/// Maps data coordinates to image coordinates (pixels, continuous) for a
/// plotting area whose pixel columns are `left..right` and rows
/// `top..bottom`.
#[derive(Debug, Clone, Copy)]
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn new(left: f64, right: f64, top: f64, bottom: f64, x: (f64, f64), y: (f64, f64)) -> Self {
        Self {
            left,
            right,
            top,
            bottom,
            x,
            y,
        }
    }

    /// Horizontal image coordinate of `x`: the range's ends fall on the
    /// centres of the first and last pixel columns.
    fn px(&self, x: f64) -> f64 {
        let t = (x - self.x.0) / (self.x.1 - self.x.0);
        self.left + 0.5 + t * (self.right - self.left - 1.0)
    }

    /// Vertical image coordinate of `y`, upwards.
    fn py(&self, y: f64) -> f64 {
        let t = (y - self.y.0) / (self.y.1 - self.y.0);
        self.bottom - 0.5 - t * (self.bottom - self.top - 1.0)
    }

    fn map(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (self.px(x), self.py(y))
    }
}

/// A piece of text to rasterise over the finished geometry.
#[derive(Debug, Clone)]
struct Label {
    text: String,
    /// Anchor point in image pixels.
    x: f64,
    y: f64,
    /// Font size in pixels (ascender to descender).
    size: f32,
    colour: RGBColor,
    /// Which point of the text's box sits on the anchor: 0 = left/top,
    /// 0.5 = centre, 1 = right/bottom.
    align: (f64, f64),
    /// Rotated to read upwards, centred on the anchor.
    vertical: bool,
}

impl Label {
    fn new(text: impl Into<String>, x: f64, y: f64, size: f32, colour: RGBColor) -> Self {
        Self {
            text: text.into(),
            x,
            y,
            size,
            colour,
            align: (0.0, 0.0),
            vertical: false,
        }
    }

    fn anchor(self, h: f64, v: f64) -> Self {
        Self {
            align: (h, v),
            ..self
        }
    }

    fn vertical(self) -> Self {
        Self {
            vertical: true,
            ..self
        }
    }
}

/// Where the geometry is drawn (at `scale` times the image resolution,
/// through plotters) and where text is collected for afterwards. All
/// coordinates taken are image pixels.
struct Canvas<'a, 'b> {
    area: &'b DrawingArea<BitMapBackend<'a, RGBPixel>, Shift>,
    scale: f64,
    labels: Vec<Label>,
}

impl Canvas<'_, '_> {
    /// Fills the image pixels `x0..x1` × `y0..y1` (rounded to whole pixels,
    /// so thin lines stay crisp after downsampling).
    fn fill(&self, x0: f64, x1: f64, y0: f64, y1: f64, colour: RGBColor) -> Result<(), PlotError> {
        let s = self.scale;
        let (x0, x1) = ((x0.round() * s) as i32, (x1.round() * s) as i32);
        let (y0, y1) = ((y0.round() * s) as i32, (y1.round() * s) as i32);
        if x1 <= x0 || y1 <= y0 {
            return Ok(());
        }
        // The bitmap backend fills filled rectangles half-open.
        let rect = Rectangle::new([(x0, y0), (x1, y1)], colour.filled());
        self.area.draw(&rect).map_err(draw_error)
    }

    /// A one-pixel vertical line through the pixel column containing `x`.
    fn vline(&self, x: f64, y0: f64, y1: f64, colour: RGBColor) -> Result<(), PlotError> {
        let x = x.floor();
        self.fill(x, x + 1.0, y0, y1, colour)
    }

    /// A one-pixel horizontal line through the pixel row containing `y`.
    fn hline(&self, x0: f64, x1: f64, y: f64, colour: RGBColor) -> Result<(), PlotError> {
        let y = y.floor();
        self.fill(x0, x1, y, y + 1.0, colour)
    }

    /// Grid lines at the ticks, except where they would double the axes
    /// (the left and bottom edges).
    fn grid(&self, frame: &Frame, x_ticks: &[f64], y_ticks: &[f64]) -> Result<(), PlotError> {
        for &v in x_ticks {
            let x = frame.px(v);
            if x.floor() > frame.left {
                self.vline(x, frame.top, frame.bottom, GRID)?;
            }
        }
        for &v in y_ticks {
            let y = frame.py(v);
            if y.floor() < frame.bottom - 1.0 {
                self.hline(frame.left, frame.right, y, GRID)?;
            }
        }
        Ok(())
    }

    /// A line `width` pixels wide through `points`, solid or dashed.
    fn polyline(
        &self,
        points: &[(f64, f64)],
        colour: RGBColor,
        width: f64,
        dashed: bool,
    ) -> Result<(), PlotError> {
        let style = colour.stroke_width((width * self.scale).round().max(1.0) as u32);
        let pieces = if dashed {
            dashes(points, 9.0, 5.0)
        } else {
            vec![points.to_vec()]
        };
        for piece in pieces {
            let px: Vec<(i32, i32)> = piece.iter().map(|&p| self.to_backend(p)).collect();
            if px.len() >= 2 {
                self.area
                    .draw(&PathElement::new(px, style))
                    .map_err(draw_error)?;
            }
        }
        Ok(())
    }

    /// A filled disc of `radius` pixels, `alpha` opaque.
    fn dot(
        &self,
        centre: (f64, f64),
        radius: f64,
        colour: RGBColor,
        alpha: f64,
    ) -> Result<(), PlotError> {
        let r = (radius * self.scale).round().max(1.0) as i32;
        let circle = Circle::new(self.to_backend(centre), r, colour.mix(alpha).filled());
        self.area.draw(&circle).map_err(draw_error)
    }

    /// Queues `label` for rasterising over the geometry.
    fn text(&mut self, label: Label) {
        self.labels.push(label);
    }

    fn to_backend(&self, (x, y): (f64, f64)) -> (i32, i32) {
        // Finite by construction (clipped or range-checked), and the casts
        // saturate anyway.
        (
            (x * self.scale).floor() as i32,
            (y * self.scale).floor() as i32,
        )
    }
}

/// Splits a polyline into dashes `on` pixels long with `off`-pixel gaps.
fn dashes(points: &[(f64, f64)], on: f64, off: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut drawing = true;
    let mut left = on;
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let len = (b.0 - a.0).hypot(b.1 - a.1);
        let mut at = 0.0;
        if drawing && current.is_empty() {
            current.push(a);
        }
        while len - at > left {
            at += left;
            let t = at / len;
            let p = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
            if drawing {
                current.push(p);
                out.push(std::mem::take(&mut current));
                left = off;
            } else {
                current.push(p);
                left = on;
            }
            drawing = !drawing;
        }
        left -= len - at;
        if drawing {
            current.push(b);
        }
    }
    if current.len() >= 2 {
        out.push(current);
    }
    out
}

/// The embedded font, parsed once; also registered with plotters as
/// "sans-serif" so that any text plotters draws uses it too.
fn face() -> Result<&'static FontRef<'static>, PlotError> {
    static FACE: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FACE.get_or_init(|| {
        let face = FontRef::try_from_slice(FONT_BYTES).ok()?;
        register_font("sans-serif", FontStyle::Normal, FONT_BYTES).ok()?;
        Some(face)
    })
    .as_ref()
    .ok_or(PlotError::Font)
}

/// Height of a line of text in pixels.
fn line_height(face: &FontRef<'static>, size: f32) -> f64 {
    let f = face.as_scaled(PxScale::from(size));
    f64::from(f.ascent() - f.descent())
}

/// Glyphs of `text` with their pen positions, and the advance width.
fn shape(face: &FontRef<'static>, text: &str, size: f32) -> (Vec<(ab_glyph::GlyphId, f32)>, f32) {
    let f = face.as_scaled(PxScale::from(size));
    let mut pen = 0.0f32;
    let mut prev = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for c in text.chars().filter(|c| !c.is_control()) {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            pen += f.kern(p, id);
        }
        glyphs.push((id, pen));
        pen += f.h_advance(id);
        prev = Some(id);
    }
    (glyphs, pen)
}

/// Advance width of `text` in pixels.
fn text_width(face: &FontRef<'static>, text: &str, size: f32) -> f64 {
    f64::from(shape(face, text, size).1)
}

/// `text`, shortened with an ellipsis to fit `room` pixels.
fn ellipsize(face: &FontRef<'static>, text: &str, size: f32, room: f64) -> String {
    if text_width(face, text, size) <= room {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let cut = |n: usize| -> String {
        let kept: String = chars[..n].iter().collect();
        format!("{}\u{2026}", kept.trim_end())
    };
    // Width grows with the number of characters kept: bisect for the most
    // that fit (`lo` fits or is 0, `hi` does not fit).
    let (mut lo, mut hi) = (0, chars.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if text_width(face, &cut(mid), size) <= room {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    cut(lo)
}

/// Rasterises `label` onto the RGB image `buf` of width `w`, blending by
/// glyph coverage.
fn draw_label(buf: &mut [u8], w: usize, h: usize, face: &FontRef<'static>, label: &Label) {
    let f = face.as_scaled(PxScale::from(label.size));
    let (glyphs, advance) = shape(face, &label.text, label.size);
    let (ascent, descent) = (f.ascent(), f.descent());
    // Coverage of the text's box, with a pixel of slack around it.
    let bw = advance.ceil() as usize + 4;
    let bh = (ascent - descent).ceil() as usize + 4;
    let mut cov = vec![0f32; bw * bh];
    for (id, pen) in glyphs {
        let glyph = id.with_scale_and_position(label.size, point(2.0 + pen, 2.0 + ascent));
        if let Some(outline) = f.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|gx, gy, c| {
                let x = b.min.x as i64 + i64::from(gx);
                let y = b.min.y as i64 + i64::from(gy);
                if (0..bw as i64).contains(&x) && (0..bh as i64).contains(&y) {
                    let k = y as usize * bw + x as usize;
                    cov[k] = (cov[k] + c).min(1.0);
                }
            });
        }
    }
    // Where the box's top-left pixel lands.
    let (text_w, text_h) = (f64::from(advance), f64::from(ascent - descent));
    let (ox, oy) = if label.vertical {
        (
            (label.x - text_h / 2.0).round() as i64 - 2,
            (label.y + text_w / 2.0).round() as i64 + 2,
        )
    } else {
        (
            (label.x - label.align.0 * text_w).round() as i64 - 2,
            (label.y - label.align.1 * text_h).round() as i64 - 2,
        )
    };
    let RGBColor(r, g, b) = label.colour;
    for by in 0..bh {
        for bx in 0..bw {
            let a = cov[by * bw + bx];
            if a <= 0.0 {
                continue;
            }
            // Upright, or turned a quarter anticlockwise to read upwards.
            let (x, y) = if label.vertical {
                (ox + by as i64, oy - bx as i64)
            } else {
                (ox + bx as i64, oy + by as i64)
            };
            if !(0..w as i64).contains(&x) || !(0..h as i64).contains(&y) {
                continue;
            }
            let k = (y as usize * w + x as usize) * 3;
            for (c, fg) in buf[k..k + 3].iter_mut().zip([r, g, b]) {
                *c = (f32::from(*c) * (1.0 - a) + f32::from(fg) * a).round() as u8;
            }
        }
    }
}

/// Draws with `draw` onto a white `w`×`h` image and encodes it as PNG:
/// geometry supersampled where affordable, then text on top.
fn render(
    w: u32,
    h: u32,
    draw: impl FnOnce(&mut Canvas<'_, '_>) -> Result<(), PlotError>,
) -> Result<Vec<u8>, PlotError> {
    checked_size(w.into(), h.into())?;
    let face = face()?;
    let s: u32 = if u64::from(w) * u64::from(h) <= SUPERSAMPLE_MAX_PIXELS {
        2
    } else {
        1
    };
    let (sw, sh) = (w * s, h * s);
    // `checked_size` bounds these products far below usize::MAX.
    let mut big = vec![255u8; sw as usize * sh as usize * 3];
    let labels = {
        let backend = BitMapBackend::<RGBPixel>::with_buffer_and_format(&mut big, (sw, sh))
            .map_err(draw_error)?;
        let area = backend.into_drawing_area();
        let mut canvas = Canvas {
            area: &area,
            scale: f64::from(s),
            labels: Vec::new(),
        };
        draw(&mut canvas)?;
        let labels = canvas.labels;
        area.present().map_err(draw_error)?;
        labels
    };
    let (w, h, s) = (w as usize, h as usize, s as usize);
    let mut buf = if s == 1 {
        big
    } else {
        let mut small = vec![0u8; w * h * 3];
        let sw = w * s;
        let norm = (s * s) as u32;
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut sum = 0u32;
                    for dy in 0..s {
                        let row = (y * s + dy) * sw;
                        for dx in 0..s {
                            sum += u32::from(big[(row + x * s + dx) * 3 + c]);
                        }
                    }
                    small[(y * w + x) * 3 + c] = ((sum + norm / 2) / norm) as u8;
                }
            }
        }
        small
    };
    for label in &labels {
        draw_label(&mut buf, w, h, face, label);
    }
    let mut png = Vec::new();
    PngEncoder::new(&mut png).write_image(
        &buf,
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(png)
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

/// Polylines (in data coordinates) and isolated points.
type Clipped = (Vec<Vec<(f64, f64)>>, Vec<(f64, f64)>);

/// Splits `points` into polylines inside `r`: breaks at non-finite points,
/// clips segments at the rectangle's edges. Also returns the finite points
/// inside `r` with no finite neighbour, which a line cannot show and are
/// drawn as dots instead.
fn clip_polylines(points: &[(f64, f64)], r: &Rect) -> Clipped {
    let finite = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let inside = |p: &(f64, f64)| p.0 >= r.x0 && p.0 <= r.x1 && p.1 >= r.y0 && p.1 <= r.y1;
    let mut lines = Vec::new();
    let mut dots = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    let mut flush = |current: &mut Vec<(f64, f64)>| {
        if current.len() >= 2 {
            lines.push(std::mem::take(current));
        }
        current.clear();
    };
    let mut prev: Option<(f64, f64)> = None;
    for (i, p) in points.iter().enumerate() {
        if !finite(p) {
            flush(&mut current);
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
                        flush(&mut current);
                        current.push(s);
                    }
                    current.push(e);
                }
                None => flush(&mut current),
            }
        }
        prev = Some(*p);
    }
    flush(&mut current);
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

/// At most `max_count` (at least 2) round tick values in `[lo, hi]`, a
/// multiple of 1, 2 or 5 times a power of ten apart, and that step.
fn nice_ticks(lo: f64, hi: f64, max_count: usize) -> (Vec<f64>, f64) {
    let raw = (hi - lo) / max_count.max(2) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    if !(step.is_finite() && step > 0.0) {
        return (vec![lo, hi], hi - lo);
    }
    let first = (lo / step).ceil();
    let eps = 1e-9 * step;
    let ticks = (0..=max_count.max(2) + 1)
        .map(|k| (first + k as f64) * step)
        .take_while(|v| *v <= hi + eps)
        .map(|v| if v.abs() < eps { 0.0 } else { v })
        .collect();
    (ticks, step)
}

/// A tick label for `v` on an axis whose ticks are `step` apart: exactly
/// the decimals the step needs, scientific notation for very large or very
/// small magnitudes, and a true minus sign.
fn format_tick(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-6 { 0.0 } else { v };
    let mag = v.abs();
    let s = if mag == 0.0 && step < 1e-4 {
        "0".to_string()
    } else if mag >= 1e6 || step < 1e-4 {
        let digits = (mag.log10().floor() - step.log10().floor()).clamp(0.0, 8.0) as usize;
        let s = format!("{v:.digits$e}");
        match s.split_once('e') {
            Some((m, e)) if m.contains('.') => {
                format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
            }
            _ => s,
        }
    } else {
        let decimals = (-step.log10().floor()).clamp(0.0, 10.0) as usize;
        format!("{v:.decimals$}")
    };
    s.replace('-', "\u{2212}")
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

    /// Pixels within `tol` of `c` in every channel.
    fn count_near(img: &image::RgbImage, c: RGBColor, tol: i32) -> usize {
        img.pixels()
            .filter(|p| {
                (i32::from(p[0]) - i32::from(c.0)).abs() <= tol
                    && (i32::from(p[1]) - i32::from(c.1)).abs() <= tol
                    && (i32::from(p[2]) - i32::from(c.2)).abs() <= tol
            })
            .count()
    }

    /// Bluish pixels: scatter dots blended over white.
    fn count_bluish(img: &image::RgbImage) -> usize {
        img.pixels()
            .filter(|p| i32::from(p[2]) - i32::from(p[0]) > 30 && p[2] > 150)
            .count()
    }

    /// Dark pixels: text and axes.
    fn count_dark(img: &image::RgbImage) -> usize {
        img.pixels().filter(|p| p.0.iter().all(|&c| c < 90)).count()
    }

    fn sine(n: usize, phase: f64) -> Vec<(f64, f64)> {
        (0..=n)
            .map(|i| {
                let t = i as f64 / n as f64;
                (t, (6.0 * t + phase).sin())
            })
            .collect()
    }

    /// Deterministic pseudo-Gaussian cloud (sums of uniforms from an LCG).
    fn cloud(n: usize, seed: u64) -> Vec<[f64; 2]> {
        let mut s = seed;
        let mut u = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let a = u() + u() + u() + u() - 2.0;
                let b = u() + u() + u() + u() - 2.0;
                [a, 0.5 * b]
            })
            .collect()
    }

    #[test]
    fn line_plot_png_has_the_size_series_colours_and_text() {
        let mut plot = LinePlot::new("Sines", "t", "y");
        plot.push("first", sine(200, 0.0));
        plot.push("second", sine(200, 1.0));
        let img = decode(&plot.render_png().unwrap());
        assert_eq!(img.dimensions(), LinePlot::DEFAULT_SIZE);
        assert!(count_near(&img, PALETTE[0], 12) > 500);
        assert!(count_near(&img, PALETTE[1], 12) > 500);
        assert!(count_dark(&img) > 1000, "axes and labels drawn");
        assert_eq!(img.get_pixel(2, 2).0, [255, 255, 255], "white background");
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
        assert!(count_near(&img, PALETTE[0], 12) > 200);
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
        // A single point, a degenerate range: drawable.
        plot.width = 400;
        plot.height = 300;
        plot.series[1].points = vec![(0.5, 2.0)];
        decode(&plot.render_png().unwrap());
    }

    #[test]
    fn many_series_and_long_names_still_render() {
        let mut plot = LinePlot::new("", "", "");
        for i in 0..40 {
            plot.push(format!("series number {i}"), sine(50, i as f64 * 0.4));
        }
        plot.series[3].name = "a name far too long for any sensible legend".repeat(4);
        plot.x_range = Some((-1e-7, 2e-7));
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
        grid.panel_size = ScatterGrid::MIN_PANEL_SIZE;
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
    fn long_text_is_ellipsized_to_fit() {
        let face = face().unwrap();
        let long = "a very long legend entry ".repeat(20);
        let short = ellipsize(face, &long, 16.0, 120.0);
        assert!(short.ends_with('\u{2026}'));
        assert!(text_width(face, &short, 16.0) <= 120.0);
        assert!(short.chars().count() > 5);
        assert_eq!(ellipsize(face, "edm", 16.0, 120.0), "edm");
        assert_eq!(ellipsize(face, "edm", 16.0, 1.0), "\u{2026}");
    }

    #[test]
    fn ticks_are_round_and_labels_short() {
        let (ticks, step) = nice_ticks(-0.05, 1.05, 8);
        assert_eq!(step, 0.2);
        let labels: Vec<String> = ticks.iter().map(|&v| format_tick(v, step)).collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let (ticks, step) = nice_ticks(-21.0, 21.0, 9);
        assert_eq!(step, 5.0);
        assert_eq!(format_tick(ticks[0], step), "\u{2212}20");
        assert_eq!(format_tick(1.5e7, 5e6), "1.5e7");
        assert_eq!(format_tick(2e-5, 1e-5), "2e\u{2212}5");
        assert_eq!(format_tick(1e-17, 0.1), "0.0");
        assert_eq!(format_tick(0.0, 1e-5), "0");
    }
}
