mod loss;
mod train;
