//! The one integration-test binary; one module per area.

mod architecture;
mod config;
mod default_pipeline;
mod engine;
mod engine_crash;
mod engine_smoke;
mod engine_stages;
mod eval;
mod export;
mod gguf;
mod golden;
mod loss;
mod model;
mod reliability;
mod report_page;
mod smollm2;
mod sql;
mod stages;
mod train;
mod util;
mod world;
