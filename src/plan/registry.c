/* The engines the planner asks (engines/engine.h). A new engine is its own file in src/engines/
 * (listed in its meson.build), its line here and its extern in engine.h. Order breaks ties of
 * cost: earlier wins. */
#include "engines/engine.h"

const nnd_engine *const nnd__engines[] = {
    &nnd__engine_fused,       /* fused reverse for small nets, float64 (fused.c)  */
    &nnd__engine_fused_f32,   /* the same in float (lane nets: double, rounded)   */
    &nnd__engine_reverse,     /* blocked reverse, float64 (reverse.c)             */
    &nnd__engine_reverse_f32, /* blocked reverse, float32 (reverse_f32.c)         */
    &nnd__engine_forward,     /* blocked forward, float64 (forward.c)             */
    &nnd__engine_forward_f32, /* blocked forward, float32 (forward_f32.c)         */
};
const size_t nnd__n_engines = sizeof nnd__engines / sizeof nnd__engines[0];

/* The product engines (nnd_product_plan_new), in the order it asks. */
const nnd_engine *const nnd__product_engines[] = {
    &nnd__product_seeded, /* WHESS, VJP: a reverse plan seeded by the weights (products.c) */
    &nnd__product_full,   /* the fused engine's J and H, contracted (products.c)           */
    &nnd__engine_dir,     /* directional forward (products/directional.c)                  */
    &nnd__product_rdiag,  /* the blocked reverse engine's Hessian diagonals (products.c)    */
    &nnd__engine_hvp,     /* reverse-over-forward HVP (products/hvp.c)                      */
};
const size_t nnd__n_product_engines = sizeof nnd__product_engines / sizeof nnd__product_engines[0];
