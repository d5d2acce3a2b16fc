UPDATE fit SET c_tokens = -1;
