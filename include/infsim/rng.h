/*
** rng.h: per-purpose random streams derived from a run's one seed.
**
** Every random draw in a run comes from a stream named by its purpose
** ("workload.arrivals", "dispatch", ...). A stream's seed is a hash of the
** run seed and the purpose name, so adding a stream or drawing more from
** one never changes the numbers another stream gives (ROSS habit).
*/
#ifndef INFSIM_RNG_H
#define INFSIM_RNG_H

#include <stdint.h>

#include <gsl/gsl_rng.h>

/* The seed of stream `purpose` of a run seeded with run_seed. */
uint64_t infsim_rng_stream_seed(uint64_t run_seed, const char *purpose);

/* A GSL generator (mt19937) seeded for that stream; free with gsl_rng_free. */
gsl_rng *infsim_rng_new(uint64_t run_seed, const char *purpose);

#endif
