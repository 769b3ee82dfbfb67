"""Everything of the console that is not UI: configs, data, models, training, scoring, metrics,
the progress protocol, jobs and runs. Never imports streamlit."""
