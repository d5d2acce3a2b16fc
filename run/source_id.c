/*
** source_id.c: the simulator's source identity (run.h), generated at
** build time by run/source_id.cmake from libinfsim's sources and headers.
*/
#include "infsim/run.h"

#include "infsim_source_id.h"

const char *infsim_source_id(void) { return INFSIM_SOURCE_ID; }
