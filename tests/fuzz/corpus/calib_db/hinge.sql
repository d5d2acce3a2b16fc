UPDATE fit SET hinge_var = 'bogus', ratio_terms = '1 2 x';
