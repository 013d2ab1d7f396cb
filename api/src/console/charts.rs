//! Charts drawn on the server as SVG (plotters' SVG backend), embedded in the pages.
