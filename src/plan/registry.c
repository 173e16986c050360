/* The engines the planner asks (engines/engine.h). A new engine is its own file in src/engines/
 * (listed in its meson.build) and its line here, in both lists. Order breaks ties of cost:
 * earlier wins. */
#include "engines/engine.h"

extern const nnd_engine nnd__engine_fused, nnd__engine_fused_f32, nnd__engine_reverse, nnd__engine_reverse_f32,
    nnd__engine_forward, nnd__engine_forward_f32;

const nnd_engine *const nnd__engines[] = {
    &nnd__engine_fused,       /* fused reverse for small nets, float64 (fused.c)  */
    &nnd__engine_fused_f32,   /* the same, rounded to float32 once (fused.c)      */
    &nnd__engine_reverse,     /* blocked reverse, float64 (reverse.c)             */
    &nnd__engine_reverse_f32, /* blocked reverse, float32 (reverse_f32.c)         */
    &nnd__engine_forward,     /* blocked forward, float64 (forward.c)             */
    &nnd__engine_forward_f32, /* blocked forward, float32 (forward_f32.c)         */
};
const size_t nnd__n_engines = sizeof nnd__engines / sizeof nnd__engines[0];
