//! tokentop: a terminal console for live LLM API traffic.
//!
//! The layers, in the order data flows through them:
//! - [`ingest`] reads inputs and [`parse`] turns their lines into [`event::Event`]s;
//! - [`pricing`] prices an event when its source did not bill it;
//! - [`stats`] folds events into mergeable aggregates (counters and HDR histograms);
//! - [`engine`] keeps those aggregates in rolling time windows for live sources;
//! - [`report`] turns aggregates into the numbers users read, as JSON or a table.

pub mod alert;
pub mod clickhouse;
pub mod config;
pub mod engine;
pub mod event;
pub mod export;
pub mod filter;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod parse;
pub mod pricing;
pub mod proxy;
pub mod report;
pub mod serve;
pub mod ship;
pub mod source;
pub mod stats;
pub mod synth;
pub mod text;
pub mod time;
pub mod ui;
