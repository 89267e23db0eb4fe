/* FANN peer for bench/run.py: incremental (online, batch 1) backprop epochs, float32.
 *
 * usage: fann_bench SIZES HIDDEN OUTPUT N EPOCHS REPS
 *   SIZES  layer widths, comma separated (e.g. 2,3,1)
 *   HIDDEN, OUTPUT  sigmoid | tanh  (activation of the hidden layers / of the output layer)
 *   N      samples in the synthetic training set; EPOCHS epochs are timed per repeat
 * prints one line per repeat: "samples_per_s <value>".
 *
 * Settings match deltaprop's online workloads: learning rate 0.01, no momentum, linear error
 * function (FANN's default tanh error function would change the gradient, not only the speed),
 * and activations scaled to the textbook ones: FANN's sigmoid is 1/(1+exp(-2 s x)) and its
 * symmetric sigmoid tanh(s x), so steepness 0.5 gives the logistic and 1.0 gives tanh.
 * Samples are visited in order (FANN's incremental training does not shuffle).
 */
#include <floatfann.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* A fixed LCG, so every run trains on the same data without depending on libc's rand(). */
static unsigned long long lcg_state = 12345;
static float uniform01(void) {
  lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((lcg_state >> 40) * (1.0 / 16777216.0));
}

static void set_activation(struct fann *ann, const char *name, int output) {
  enum fann_activationfunc_enum f = FANN_SIGMOID;
  fann_type steepness = 0.5f;
  if (strcmp(name, "tanh") == 0) {
    f = FANN_SIGMOID_SYMMETRIC;
    steepness = 1.0f;
  } else if (strcmp(name, "sigmoid") != 0) {
    fprintf(stderr, "unknown activation %s\n", name);
    exit(2);
  }
  if (output) {
    fann_set_activation_function_output(ann, f);
    fann_set_activation_steepness_output(ann, steepness);
  } else {
    fann_set_activation_function_hidden(ann, f);
    fann_set_activation_steepness_hidden(ann, steepness);
  }
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s SIZES HIDDEN OUTPUT N EPOCHS REPS\n", argv[0]);
    return 2;
  }
  unsigned int sizes[16], layers = 0;
  for (char *tok = strtok(argv[1], ","); tok && layers < 16; tok = strtok(NULL, ","))
    sizes[layers++] = (unsigned int)atoi(tok);
  const unsigned int n = (unsigned int)atoi(argv[4]);
  const int epochs = atoi(argv[5]), reps = atoi(argv[6]);
  if (layers < 2 || n == 0 || epochs < 1 || reps < 1) {
    fprintf(stderr, "bad arguments\n");
    return 2;
  }

  struct fann *ann = fann_create_standard_array(layers, sizes);
  fann_randomize_weights(ann, -0.5f, 0.5f);
  set_activation(ann, argv[2], 0);
  set_activation(ann, argv[3], 1);
  fann_set_training_algorithm(ann, FANN_TRAIN_INCREMENTAL);
  fann_set_train_error_function(ann, FANN_ERRORFUNC_LINEAR);
  fann_set_learning_rate(ann, 0.01f);
  fann_set_learning_momentum(ann, 0.0f);

  const unsigned int n_in = sizes[0], n_out = sizes[layers - 1];
  struct fann_train_data *data = fann_create_train(n, n_in, n_out);
  for (unsigned int i = 0; i < n; ++i) {
    for (unsigned int j = 0; j < n_in; ++j) data->input[i][j] = 2.0f * uniform01() - 1.0f;
    for (unsigned int j = 0; j < n_out; ++j) data->output[i][j] = uniform01();
  }

  fann_train_epoch(ann, data); /* warm-up: page in the data and the weights */
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_s();
    float mse = 0.0f;
    for (int e = 0; e < epochs; ++e) mse = fann_train_epoch(ann, data);
    const double dt = now_s() - t0;
    printf("samples_per_s %.6g mse %.6g\n", (double)n * epochs / dt, (double)mse);
    fflush(stdout);
  }
  fann_destroy_train(data);
  fann_destroy(ann);
  return 0;
}
