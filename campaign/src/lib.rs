//! # faultline-campaign
//!
//! faultline as a CI gate: [`campaign`] runs a matrix of test definitions × seeds as ordinary
//! `faultline test` runs and sums them up in one `campaign.json` (the report crate renders its
//! JUnit file and page); [`shrink`] cuts a failing run's fault schedule down to the smallest
//! one that still fails. Both run each test as a child process ([`runner`]).

pub mod campaign;
pub mod runner;
pub mod shrink;
