//! Property tests: histories of a real (simulated) register are linearizable whatever the
//! overlap and the lost responses; planting one stale read makes them not linearizable, and
//! the checker blames exactly that read.

mod common;

use faultline_checker::synth::{self, RegisterSynth, Rng, Values};
use faultline_checker::{check_history, CheckOptions, ModelSpec, Verdict};
use proptest::prelude::*;
use serde_json::Value;

fn shape() -> impl Strategy<Value = RegisterSynth> {
    (
        1usize..4,     // keys
        1usize..12,    // concurrency
        20usize..400,  // ops
        0.0f64..0.3,   // lost
        0.0f64..1.0,   // lost_took_effect
        0.1f64..0.8,   // reads
        any::<bool>(), // cas
        1u64..40,      // max latency
        any::<u64>(),  // seed
        prop_oneof![Just(Values::Unique), (2u64..6).prop_map(Values::Range)],
    )
        .prop_map(
            |(
                keys,
                concurrency,
                ops,
                lost,
                lost_took_effect,
                reads,
                cas,
                max_latency,
                seed,
                values,
            )| {
                RegisterSynth {
                    keys,
                    concurrency,
                    ops,
                    lost,
                    lost_took_effect,
                    reads,
                    cas,
                    values,
                    max_latency,
                    seed,
                }
            },
        )
}

fn spec() -> ModelSpec {
    ModelSpec::CasRegister {
        initial: Value::Null,
    }
}

fn options() -> CheckOptions {
    CheckOptions {
        time_limit: Some(std::time::Duration::from_secs(60)),
        stop_at_first_failure: false,
        ..CheckOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("FAULTLINE_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(300)
    ))]

    #[test]
    fn simulated_register_histories_are_linearizable(cfg in shape()) {
        let history = synth::register_history(&cfg);
        let report = check_history(&spec(), &history, &options()).unwrap();
        prop_assert_eq!(report.verdict, Verdict::Valid, "{:?}", report.failures.first().map(|f| &f.sentence));
    }

    #[test]
    fn a_planted_stale_read_is_found(cfg in shape(), plant_seed in any::<u64>()) {
        let cfg = RegisterSynth { values: Values::Unique, ..cfg };
        let mut history = synth::register_history(&cfg);
        let Some(culprit) = synth::plant_stale_read(&mut history, &mut Rng::new(plant_seed)) else {
            return Ok(()); // too few operations to plant one
        };
        let report = check_history(&spec(), &history, &options()).unwrap();
        prop_assert_eq!(report.verdict, Verdict::Invalid);
        // Everything that returned before the planted read is still linearizable (the read
        // changed nothing they saw), and the read itself never is: so the culprit is exactly
        // the planted read, and no other key is blamed.
        prop_assert_eq!(report.failures.len(), 1);
        prop_assert_eq!(report.failures[0].culprit.index, culprit);
    }
}
