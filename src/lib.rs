//! tokentop: a terminal console for live LLM API traffic.
//!
//! The layers, in the order data flows through them:
//! - [`parse`] turns input lines into [`event::Event`]s;
//! - [`pricing`] prices an event when its source did not bill it;
//! - [`stats`] folds events into mergeable aggregates (counters and HDR histograms);
//! - [`engine`] keeps those aggregates in rolling time windows for live sources;
//! - [`report`] reads inputs to their end and renders the numbers as JSON or text.

pub mod event;
pub mod ingest;
pub mod parse;
pub mod pricing;
pub mod stats;
pub mod time;
