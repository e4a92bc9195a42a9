"""Rewrites: each plans on an analysis, then applies the plan to a private copy of the graph."""
