//! Range checks for purification settings. Each refusal is an [`Error::Setting`] naming the
//! setting's path in the report's `config` (`unlearn.lr`, `holdout_fraction`), the name `--set`
//! and the service take, so the CLI can point at its own flag for it and the service can return
//! the message as is.

use crate::error::{Error, Result};

/// A finite number above zero (learning rates).
pub fn positive(path: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::setting(path, format!("must be a finite number above 0, got {value}")))
    }
}

/// A finite number at or above zero (loss weights).
pub fn non_negative(path: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::setting(path, format!("must be a finite number >= 0, got {value}")))
    }
}

/// A share: in [0, 1], or [0, 1) when `one_allowed` is false.
pub fn fraction(path: &str, value: f64, one_allowed: bool) -> Result<()> {
    let fits = if one_allowed { (0.0..=1.0).contains(&value) } else { (0.0..1.0).contains(&value) };
    if fits {
        Ok(())
    } else {
        let upper = if one_allowed { "1]" } else { "1)" };
        Err(Error::setting(path, format!("must be in [0, {upper}, got {value}")))
    }
}

/// A count of at least `min`.
pub fn at_least(path: &str, value: usize, min: usize) -> Result<()> {
    if value >= min {
        Ok(())
    } else {
        Err(Error::setting(path, format!("must be at least {min}, got {value}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_names_the_setting_and_refuses_nan() {
        for err in [
            positive("unlearn.lr", f64::NAN),
            positive("unlearn.lr", 0.0),
            non_negative("unlearn.ce_weight", -1.0),
            non_negative("unlearn.ce_weight", f64::INFINITY),
            fraction("holdout_fraction", 1.0, false),
            fraction("holdout_fraction", f64::NAN, true),
            at_least("recovery.restarts", 0, 1),
        ] {
            let err = err.unwrap_err();
            assert!(
                matches!(&err, Error::Setting { path, .. } if err.to_string().starts_with(&format!("{path} must "))),
                "{err}"
            );
        }
        assert_eq!(
            fraction("holdout_fraction", 1.0, false).unwrap_err().to_string(),
            "holdout_fraction must be in [0, 1), got 1"
        );
        assert!(positive("unlearn.lr", 1e-3).is_ok());
        assert!(non_negative("unlearn.ce_weight", 0.0).is_ok());
        assert!(fraction("evidence_threshold", 1.0, true).is_ok() && fraction("holdout_fraction", 0.0, false).is_ok());
        assert!(at_least("recovery.restarts", 1, 1).is_ok());
    }
}
