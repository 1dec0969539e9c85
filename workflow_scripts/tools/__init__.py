"""Tools a person runs on a grid (`make plan`, `make status`); no rule runs them."""
