/* The float32 instance of the forward engine: forward.c over float (see real.h). */
#define NND_F32 1
#include "forward.c"
