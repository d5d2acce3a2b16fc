typedef int icl_placeholder_executor;
