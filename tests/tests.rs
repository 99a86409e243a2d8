mod loss;
mod model;
mod train;
