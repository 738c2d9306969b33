/* The tl2cgen peer called from C: the GBDT compiled by tl2cgen (header.h, main.c) scoring one
 * row at a time, as a C program embedding it would. Built and run by scorer_peers.py:
 *
 *   gcc -O3 -std=c99 -o bench_tl2cgen bench_tl2cgen.c <tl2cgen dir>/main.c -I<tl2cgen dir> -lm
 *   bench_tl2cgen rows.f32 scores.f64 FEATURES ROUNDS
 *
 * rows.f32 and scores.f64 are what `cargo bench -p scorer-wasm --bench score -- --export=DIR`
 * writes. Prints one JSON line: rows, runs, ns per row of each timed round, and the largest
 * difference from the scorer's own scores. run_rows is the function to count instructions of
 * (valgrind --tool=callgrind --toggle-collect=run_rows): runs x rows calls of predict. */
#define _POSIX_C_SOURCE 199309L
#include "header.h"
#include <time.h>

static void *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = malloc(*len ? *len : 1);
  if (!buf || fread(buf, 1, *len, f) != *len) {
    perror(path);
    exit(2);
  }
  fclose(f);
  return buf;
}

/* Scores every row: the features into tl2cgen's Entry array (NaN = missing), then predict. */
__attribute__((noinline)) static void run_rows(const float *rows, size_t n, size_t nf, float *out) {
  union Entry entry[256];
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < nf; j++) {
      float x = rows[i * nf + j];
      if (isnan(x)) {
        entry[j].missing = -1;
      } else {
        entry[j].fvalue = x;
      }
    }
    float result = 0.0f;
    predict(entry, 0, &result);
    out[i] = result;
  }
}

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s rows.f32 scores.f64 FEATURES ROUNDS\n", argv[0]);
    return 2;
  }
  size_t rows_len, scores_len;
  const float *rows = read_file(argv[1], &rows_len);
  const double *scores = read_file(argv[2], &scores_len);
  size_t nf = (size_t)atoi(argv[3]);
  int rounds = atoi(argv[4]);
  size_t n = rows_len / sizeof(float) / nf;
  if (nf == 0 || nf > 256 || (int32_t)nf != get_num_feature() || n != scores_len / sizeof(double)) {
    fprintf(stderr, "%zu features, %zu rows, %zu scores: they do not fit the model (%d features)\n", nf,
            n, scores_len / sizeof(double), get_num_feature());
    return 2;
  }
  float *out = malloc(n * sizeof(float));
  run_rows(rows, n, nf, out); /* warm-up */
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)out[i] - scores[i]);
    worst = d > worst ? d : worst;
  }
  printf("{\"rows\": %zu, \"runs\": %d, \"max_abs_diff\": %.3g, \"ns\": [", n, rounds + 1, worst);
  for (int r = 0; r < rounds; r++) {
    double t = now_ns();
    run_rows(rows, n, nf, out);
    printf("%s%.1f", r ? ", " : "", (now_ns() - t) / (double)n);
  }
  printf("]}\n");
  return 0;
}
