# Latent-class conditional logit with R flexmix on an emdpo long CSV
# (annotator,task,alt,chosen[,group],x1..xp): K types, all decisions of an
# annotator share the type (grouping "| annotator"), one EM run per repeat.
#
#   Rscript bench/flexmix_em.R DATA.csv [K=3] [reps=3] [tol=1e-6] [seed=1]
#
# Prints one line per repeat and a final machine-readable line
#   RESULT tool=flexmix ... median_s=... loglik=...
# Elapsed time is system.time() around the flexmix() call only.
#
# Log-likelihood: FLXMRcondlogit gives each row of a choice set the set's
# log-probability divided by the set size, so the rows of a set sum to
# log P_k(decision); the grouping sums decisions within an annotator before
# mixing, so logLik() is sum_i log sum_k eta_k prod_j P_k(V_ij): the same
# observed-data log-likelihood emdpo reports. No adjustment is needed.
suppressPackageStartupMessages(library(flexmix))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1) stop("usage: flexmix_em.R DATA.csv [K] [reps] [tol] [seed]")
path <- args[1]
K <- if (length(args) >= 2) as.integer(args[2]) else 3L
reps <- if (length(args) >= 3) as.integer(args[3]) else 3L
tol <- if (length(args) >= 4) as.numeric(args[4]) else 1e-6
seed <- if (length(args) >= 5) as.integer(args[5]) else 1L

d <- read.csv(path, stringsAsFactors = FALSE)
xcols <- setdiff(names(d), c("annotator", "task", "alt", "chosen", "group"))
# One stratum per (annotator, task); flexmix's condlogit needs ids 1..S.
key <- paste(d$annotator, d$task, sep = "\r")
d$sid <- match(key, unique(key))
d$aid <- match(d$annotator, unique(d$annotator))
d$chosen <- as.integer(d$chosen > 0)
if (any(tapply(d$chosen, d$sid, sum) != 1))
  stop("flexmix's conditional logit handles top choices only (one chosen row per decision)")
fml <- as.formula(paste("chosen ~", paste(xcols, collapse = " + "), "| aid"))

lls <- numeric(reps)
secs <- numeric(reps)
iters <- integer(reps)
for (r in seq_len(reps)) {
  set.seed(seed + r - 1L)
  fit <- NULL
  tm <- system.time(
    fit <- flexmix(fml, data = d, k = K, model = FLXMRcondlogit(strata = ~ sid),
                   control = list(nrep = 1, tolerance = tol, iter.max = 500))
  )
  secs[r] <- tm[["elapsed"]]
  lls[r] <- as.numeric(logLik(fit))
  iters[r] <- fit@iter
  cat(sprintf("flexmix rep %d: %.3f s, %d iterations, logLik %.6f, K kept %d, converged %s\n",
              r, secs[r], iters[r], lls[r], fit@k, fit@converged))
}
best <- which.max(lls)
cat(sprintf(paste0("RESULT tool=flexmix K=%d tol=%g reps=%d median_s=%.4f min_s=%.4f loglik=%.6f ",
                   "loglik_median=%.6f iterations=%d n_annot=%d n_dec=%d flexmix=%s R=%s\n"),
            K, tol, reps, median(secs), min(secs), lls[best], median(lls), iters[best],
            length(unique(d$aid)), length(unique(d$sid)),
            as.character(packageVersion("flexmix")), paste(R.version$major, R.version$minor, sep = ".")))
