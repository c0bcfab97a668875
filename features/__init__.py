"""Reading and validating inputs, the study-area grid, the cell x period panel and its features."""
