"""Training recipes for tutti-tiny (`tutti train <stage> --recipe tiny`) and the loop they share."""
