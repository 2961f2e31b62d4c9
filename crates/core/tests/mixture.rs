//! `IsotropicMixture`: every rule rejects with an error naming its field,
//! and an accepted mixture carries the derived numbers.

use diffuse_core::{Error, IsotropicMixture, WEIGHT_SUM_TOLERANCE};

/// What a rejection must look like: an invalid-argument error naming the
/// field, or a non-finite error whose message names the entry.
#[derive(Debug)]
enum Expect {
    Invalid(&'static str, &'static str),
    NonFinite(&'static str),
}

fn mixture(w: &[f64], m: &[&[f64]], s: &[f64]) -> Result<IsotropicMixture, Error> {
    IsotropicMixture::new(
        w.to_vec(),
        m.iter().map(|row| row.to_vec()).collect(),
        s.to_vec(),
    )
}

#[test]
fn each_invalid_mixture_is_rejected_naming_its_field() {
    use Expect::{Invalid, NonFinite};
    let max = f64::MAX;
    let cases: Vec<(&str, Result<IsotropicMixture, Error>, Expect)> = vec![
        (
            "no component",
            mixture(&[], &[], &[]),
            Invalid("weights", "empty: a mixture needs at least one component"),
        ),
        (
            "fewer means than weights",
            mixture(&[0.5, 0.5], &[&[0.0]], &[1.0, 1.0]),
            Invalid("means", "1 means for 2 weights"),
        ),
        (
            "more stds than weights",
            mixture(&[1.0], &[&[0.0]], &[1.0, 1.0]),
            Invalid("stds", "2 standard deviations for 1 weights"),
        ),
        (
            "dimension 0",
            mixture(&[1.0], &[&[]], &[1.0]),
            Invalid("means", "component 0 has dimension 0"),
        ),
        (
            "dimension mismatch",
            mixture(&[0.5, 0.5], &[&[0.0], &[0.0, 1.0]], &[1.0, 1.0]),
            Invalid("means", "component 1 has dimension 2, component 0 has 1"),
        ),
        (
            "NaN mean",
            mixture(&[1.0], &[&[0.0, f64::NAN]], &[1.0]),
            NonFinite("Gaussian-mixture means[0][1] = NaN"),
        ),
        (
            "infinite weight",
            mixture(&[0.5, f64::INFINITY], &[&[0.0], &[1.0]], &[1.0, 1.0]),
            NonFinite("Gaussian-mixture weights[1] = inf"),
        ),
        (
            "negative weight",
            mixture(&[1.5, -0.5], &[&[0.0], &[1.0]], &[1.0, 1.0]),
            Invalid("weights", "weights[1] = -0.5 < 0"),
        ),
        (
            "weights summing to 1.4",
            mixture(&[0.7, 0.7], &[&[0.0], &[1.0]], &[1.0, 1.0]),
            Invalid("weights", "they sum to 1.4, not 1 (within 1e-6)"),
        ),
        (
            "NaN std",
            mixture(&[1.0], &[&[0.0]], &[f64::NAN]),
            NonFinite("Gaussian-mixture stds[0] = NaN"),
        ),
        (
            "zero std",
            mixture(&[1.0], &[&[0.0]], &[0.0]),
            Invalid("stds", "stds[0] = 0 is not positive"),
        ),
        (
            "negative std",
            mixture(&[0.5, 0.5], &[&[0.0], &[1.0]], &[1.0, -2.0]),
            Invalid("stds", "stds[1] = -2 is not positive"),
        ),
        (
            "variance underflow",
            mixture(&[1.0], &[&[0.0]], &[1e-160]),
            Invalid("stds", "stds[0] = 0.0000"),
        ),
        (
            "variance overflow",
            mixture(&[1.0], &[&[0.0]], &[1e160]),
            Invalid("stds", "its square inf leaves f64's normal range"),
        ),
        (
            // Σₖ wₖ·MAX rounds past MAX for these weights (which sum to 1).
            "prior mean overflow",
            mixture(
                &[
                    0.584_831_277_140_104_9,
                    0.101_133_878_103_526_66,
                    0.314_034_844_756_368_56,
                ],
                &[&[max], &[max], &[max]],
                &[1.0, 1.0, 1.0],
            ),
            NonFinite("prior mean Σ wₖ μₖ overflows"),
        ),
    ];
    for (what, got, expect) in cases {
        let err = got.expect_err(what);
        match (&err, &expect) {
            (Error::InvalidArgument { name, reason }, Expect::Invalid(field, text)) => {
                assert_eq!(name, field, "{what}: {err}");
                assert!(reason.contains(text), "{what}: {err}");
            }
            (Error::NonFinite(message), Expect::NonFinite(text)) => {
                assert!(message.contains(text), "{what}: {err}");
            }
            _ => panic!("{what}: expected {expect:?}, got {err:?}"),
        }
    }
}

#[test]
fn the_error_texts_name_the_field() {
    let err = mixture(&[], &[], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid weights: empty: a mixture needs at least one component"
    );
    let err = mixture(&[1.0], &[&[0.0]], &[-1.0]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid stds: stds[0] = -1 is not positive"
    );
    let err = mixture(&[1.0], &[&[f64::INFINITY]], &[1.0]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "non-finite value in Gaussian-mixture means[0][0] = inf"
    );
}

#[test]
fn an_accepted_mixture_carries_its_derived_numbers() {
    // Within the tolerance the weights are accepted and normalised.
    let off = 0.5 * WEIGHT_SUM_TOLERANCE;
    let m = mixture(
        &[0.0, 0.25 + off, 0.75],
        &[&[9.0, 9.0], &[-1.0, 2.0], &[1.0, 0.0]],
        &[3.0, 0.5, 2.0],
    )
    .unwrap();
    let sum = 1.0 + off;
    assert_eq!((m.dim(), m.components()), (2, 3));
    assert_eq!(m.weights(), [0.0, (0.25 + off) / sum, 0.75 / sum]);
    assert_eq!(m.means()[1], [-1.0, 2.0]);
    assert_eq!(m.stds(), [3.0, 0.5, 2.0]);
    assert_eq!(m.variances(), [9.0, 0.25, 4.0]);
    assert_eq!(m.log_weights()[0], f64::NEG_INFINITY);
    assert_eq!(m.log_weights()[2], (0.75 / sum).ln());
    // The zero-weight component is inactive and out of the prior mean.
    assert_eq!(m.active(), [1, 2]);
    let (w1, w2) = (m.weights()[1], m.weights()[2]);
    assert_eq!(m.prior_mean(), [-w1 + w2, w1 * 2.0 + w2 * 0.0]);
    // Just beyond the tolerance they are rejected.
    let err = mixture(
        &[0.5, 0.5 + 2.0 * WEIGHT_SUM_TOLERANCE],
        &[&[0.0], &[1.0]],
        &[1.0, 1.0],
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                name: "weights",
                ..
            }
        ),
        "{err}"
    );
}
