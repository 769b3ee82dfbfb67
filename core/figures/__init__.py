"""Plotly figure builders for the console pages: pure functions of core data, testable without a browser."""
