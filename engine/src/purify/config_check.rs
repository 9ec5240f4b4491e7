//! Range checks for purification settings. Every message starts with the setting's path in the
//! report's `config` (`unlearn.lr`, `holdout_fraction`), the name `--set` and the service take,
//! so the CLI can point at its own flag for it and the service can return it as is.

use crate::error::{Error, Result};

/// A finite number above zero (learning rates).
pub fn positive(path: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(format!("{path} must be a finite number above 0, got {value}")))
    }
}

/// A finite number at or above zero (loss weights).
pub fn non_negative(path: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(format!("{path} must be a finite number >= 0, got {value}")))
    }
}

/// A share: in [0, 1], or [0, 1) when `one_allowed` is false.
pub fn fraction(path: &str, value: f64, one_allowed: bool) -> Result<()> {
    let fits = if one_allowed { (0.0..=1.0).contains(&value) } else { (0.0..1.0).contains(&value) };
    if fits {
        Ok(())
    } else {
        let upper = if one_allowed { "1]" } else { "1)" };
        Err(Error::invalid(format!("{path} must be in [0, {upper}, got {value}")))
    }
}

/// A count of at least `min`.
pub fn at_least(path: &str, value: usize, min: usize) -> Result<()> {
    if value >= min {
        Ok(())
    } else {
        Err(Error::invalid(format!("{path} must be at least {min}, got {value}")))
    }
}

/// The setting an error from this module names, if it names one.
pub fn setting_of(message: &str) -> Option<&str> {
    let (path, rest) = message.split_once(' ')?;
    rest.starts_with("must ").then_some(path)
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
            let message = err.unwrap_err().to_string();
            assert!(setting_of(&message).is_some(), "{message}");
        }
        assert_eq!(setting_of("holdout_fraction must be in [0, 1), got 1"), Some("holdout_fraction"));
        assert_eq!(setting_of("the clean sample has 3 classes"), None);
        assert!(positive("unlearn.lr", 1e-3).is_ok());
        assert!(non_negative("unlearn.ce_weight", 0.0).is_ok());
        assert!(fraction("evidence_threshold", 1.0, true).is_ok() && fraction("holdout_fraction", 0.0, false).is_ok());
        assert!(at_least("recovery.restarts", 1, 1).is_ok());
    }
}
