"""Partner analytics that train no model: trends, small-count disclosure control, intervention studies, exports."""
