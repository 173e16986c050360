/* The float32 instance of the reverse engine: reverse.c over float (see real.h). */
#define NND_F32 1
#include "reverse.c"
