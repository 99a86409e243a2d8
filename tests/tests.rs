mod sql;
mod world;
