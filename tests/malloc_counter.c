/* Counts the C heap allocations of a process (tests/test_allocations.py): preloaded, its
 * malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign count each call and pass
 * it on to glibc's own. operator new and NumPy's data reach the heap through these. */
#include <stdatomic.h>
#include <stddef.h>
#include <errno.h>

extern void* __libc_malloc(size_t size);
extern void* __libc_calloc(size_t count, size_t size);
extern void* __libc_realloc(void* p, size_t size);
extern void* __libc_memalign(size_t alignment, size_t size);

static atomic_long counted;

long allocations(void) { return atomic_load(&counted); }

void* malloc(size_t size) {
  atomic_fetch_add(&counted, 1);
  return __libc_malloc(size);
}

void* calloc(size_t count, size_t size) {
  atomic_fetch_add(&counted, 1);
  return __libc_calloc(count, size);
}

void* realloc(void* p, size_t size) {
  atomic_fetch_add(&counted, 1);
  return __libc_realloc(p, size);
}

void* memalign(size_t alignment, size_t size) {
  atomic_fetch_add(&counted, 1);
  return __libc_memalign(alignment, size);
}

void* aligned_alloc(size_t alignment, size_t size) { return memalign(alignment, size); }

int posix_memalign(void** out, size_t alignment, size_t size) {
  void* p = memalign(alignment, size);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
