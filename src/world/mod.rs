//! The built-in synthetic world. Its gold scorer is used only by eval.
