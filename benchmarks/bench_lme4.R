# Times lme4's lmer (REML) on a prepared frame, for benchmarks/bench_fit.py (not run on its own).
#
# Usage: Rscript benchmarks/bench_lme4.R DATA.csv SPEC.json OUT.json
#   SPEC.json: {"formula": "y ~ ... + (week | client_id)", "repeats": 3,
#               "factors": {"sex": ["F", "M", ...], ...}}   levels in the engine's order, first = reference
# Writes OUT.json: {"seconds": [...], "fixef": {name: value}, "theta": [...], "reml": criterion, "lme4": version}
# Only lmer() itself is timed (system.time elapsed), with lme4's default control, as a user would call it.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
spec <- fromJSON(args[2], simplifyVector = TRUE)
data <- read.csv(args[1], stringsAsFactors = FALSE)
for (col in names(spec$factors)) {
  data[[col]] <- factor(as.character(data[[col]]), levels = spec$factors[[col]])
}
form <- as.formula(spec$formula)
seconds <- numeric(0)
fit <- NULL
for (i in seq_len(spec$repeats)) {
  gc()
  seconds[i] <- system.time(fit <- lmer(form, data = data, REML = TRUE))[["elapsed"]]
}
fe <- fixef(fit)
out <- list(
  seconds = I(seconds),
  fixef = as.list(fe),
  theta = I(unname(getME(fit, "theta"))),
  reml = unname(REMLcrit(fit)),
  lme4 = as.character(packageVersion("lme4")),
  messages = fit@optinfo$conv$lme4$messages
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null"), args[3])
