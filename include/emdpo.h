/* emdpo: preference optimization with unobserved annotator heterogeneity.
 *
 * The umbrella header of the stable public API; the topics live in
 * include/emdpo/ and this file includes them all. Simulation and the paper's
 * experiments have their own header, <emdpo/experimental.h>, outside the
 * stable API. docs/API.md shows how to use it. */
#ifndef EMDPO_H
#define EMDPO_H

#include "emdpo/common.h"
#include "emdpo/data.h"
#include "emdpo/em.h"
#include "emdpo/lm.h"
#include "emdpo/fitfile.h"
#include "emdpo/loglinear.h"
#include "emdpo/mmra.h"
#include "emdpo/report.h"

#endif
