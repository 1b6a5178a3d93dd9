//! Exit codes shared by every subcommand (Jepsen's convention).

/// The history is linearizable / the test passed.
pub const EXIT_VALID: u8 = 0;
/// A consistency violation was found.
pub const EXIT_INVALID: u8 = 1;
/// The check could not decide (time or memory budget exhausted).
pub const EXIT_UNKNOWN: u8 = 2;
/// Bad input, bad usage, or the tool itself failed.
pub const EXIT_BAD_INPUT: u8 = 254;

/// The exit code of a verdict.
pub fn exit_code(verdict: faultline_checker::Verdict) -> u8 {
    match verdict {
        faultline_checker::Verdict::Valid => EXIT_VALID,
        faultline_checker::Verdict::Invalid => EXIT_INVALID,
        faultline_checker::Verdict::Unknown => EXIT_UNKNOWN,
    }
}
