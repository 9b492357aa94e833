# Standard errors of a latent-class conditional logit in R flexmix: one EM
# fit (not timed), then refit(), which computes the observed information
# numerically; system.time() around refit() only.
#
#   Rscript bench/flexmix_se.R DATA.csv [K=3] [seed=1]
#
# Prints a machine-readable line: RESULT tool=flexmix-se seconds=... loglik=...
suppressPackageStartupMessages(library(flexmix))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1) stop("usage: flexmix_se.R DATA.csv [K] [seed]")
path <- args[1]
K <- if (length(args) >= 2) as.integer(args[2]) else 3L
seed <- if (length(args) >= 3) as.integer(args[3]) else 1L

d <- read.csv(path, stringsAsFactors = FALSE)
xcols <- setdiff(names(d), c("annotator", "task", "alt", "chosen", "group"))
key <- paste(d$annotator, d$task, sep = "\r")
d$sid <- match(key, unique(key))
d$aid <- match(d$annotator, unique(d$annotator))
d$chosen <- as.integer(d$chosen > 0)
fml <- as.formula(paste("chosen ~", paste(xcols, collapse = " + "), "| aid"))
set.seed(seed)
fit <- flexmix(fml, data = d, k = K, model = FLXMRcondlogit(strata = ~ sid),
               control = list(nrep = 1, tolerance = 1e-6, iter.max = 500))
tm <- system.time(rf <- refit(fit))
cat(sprintf("RESULT tool=flexmix-se seconds=%.3f loglik=%.6f\n", tm[["elapsed"]], as.numeric(logLik(fit))))
