/* How far apart the machine's first two CPUs are: a cache line passed back and forth between a
 * thread on each, for bench/run.py.
 *
 * usage: core_to_core ROUND_TRIPS
 * prints "ns_per_round_trip <value>", timed after a warm-up of a tenth as many round trips.
 *
 * On a virtual machine the two vCPUs are placed on the host's cores by its scheduler, and the
 * placement changes while the guest runs: on one 2-vCPU AMD EPYC a round trip took 75 ns for
 * minutes, then 400-3000 ns. Every step of a training run at 2 threads reads data the other
 * thread wrote (the batch it gathered, the activations and deltas it computed), so a run's
 * thread scaling depends on which placement it got; run.py times this probe in the same
 * interleaved repeats as each workload, so the report shows which one a run had.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Alignas(64) atomic_long ball;
static int cpus[2];
static long round_trips;

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e9 * ts.tv_sec + ts.tv_nsec;
}

static int pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* The ball goes out odd and comes back even: each side waits for the other's value. */
static void serve(long from, long count) {
  for (long i = from; i < from + count; ++i) {
    atomic_store_explicit(&ball, 2 * i + 1, memory_order_release);
    while (atomic_load_explicit(&ball, memory_order_acquire) != 2 * i + 2) {
    }
  }
}

static void *returner(void *unused) {
  (void)unused;
  pin(cpus[1]);
  for (long i = 0; i < round_trips; ++i) {
    while (atomic_load_explicit(&ball, memory_order_acquire) != 2 * i + 1) {
    }
    atomic_store_explicit(&ball, 2 * i + 2, memory_order_release);
  }
  return NULL;
}

int main(int argc, char **argv) {
  const long timed = argc > 1 ? atol(argv[1]) : 0;
  if (timed <= 0) {
    fprintf(stderr, "usage: core_to_core ROUND_TRIPS\n");
    return 2;
  }
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return 1;
  int found = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; ++cpu)
    if (CPU_ISSET(cpu, &allowed)) cpus[found++] = cpu;
  if (found < 2) {
    fprintf(stderr, "core_to_core: fewer than two CPUs allowed\n");
    return 3;
  }
  const long warm_up = timed / 10 + 1;
  round_trips = warm_up + timed;
  pthread_t other;
  if (pin(cpus[0]) != 0 || pthread_create(&other, NULL, returner, NULL) != 0) return 1;
  serve(0, warm_up);
  const double start = now_ns();
  serve(warm_up, timed);
  const double elapsed = now_ns() - start;
  pthread_join(other, NULL);
  printf("ns_per_round_trip %.1f\n", elapsed / timed);
  return 0;
}
