UPDATE measurement SET median_ns = 1e-310 WHERE id = 3;
