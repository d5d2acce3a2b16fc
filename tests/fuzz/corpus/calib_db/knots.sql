UPDATE fit SET knots = '1 5 2 3' WHERE kernel = 'kv_copy';
