"""Lines, their assignment history, number inventory and line orders."""
