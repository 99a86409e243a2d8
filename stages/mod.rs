//! One file per pipeline stage; this module is the registry.
