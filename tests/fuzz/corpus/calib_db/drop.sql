DROP TABLE fit_summary; DELETE FROM fit;
