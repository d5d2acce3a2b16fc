/*
** mpi_lsan.c: LeakSanitizer's defaults in a sanitized `infsim-mpi`
** (INFSIM_SANITIZE builds only). Open MPI allocates in MPI_Init and
** MPI_Finalize, its progress threads and the components it dlopens, and
** never frees by design; without these, every sanitized cluster run or
** MPI sweep exits 1 on leaks that are not ours. Only stacks through Open
** MPI are suppressed: leaks of ours under MPI are still reported. Full
** stacks (no fast unwinding on malloc) let the suppressions see Open
** MPI's frames. ASAN_OPTIONS and LSAN_OPTIONS still override both.
*/
const char *__asan_default_options(void);
const char *__lsan_default_suppressions(void);

const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

const char *__lsan_default_suppressions(void) {
  return "leak:ompi_mpi_init\n"
         "leak:ompi_mpi_finalize\n"
         "leak:orte_init\n"
         "leak:orte_finalize\n"
         "leak:libopen-pal.so\n"
         "leak:libopen-rte.so\n"
         "leak:libmpi.so\n"
         "leak:libpmix.so\n"
         "leak:mca_base_\n"
         "leak:event_base_loop\n";
}
