# Reference numbers for the project's mixed-model engine, from lme4 / lmerTest / pbkrtest.
#
# Run from the project root, after `.venv/bin/python tests/reference/make_reference_data.py`:
#   Rscript tests/reference/make_reference.R              # every case
#   Rscript tests/reference/make_reference.R toy_saddle   # only the cases named (the others stay untouched)
# Needs Debian's r-cran-lme4, r-cran-lmertest, r-cran-pbkrtest, r-cran-hsaur3, r-cran-jsonlite.
# Writes tests/reference/lmm/<case>.json (and the sleepstudy / BtheB data sets in the universal
# format: group, y, x_<fixed-effect columns>), plus versions.json. `make test` never runs R.
suppressPackageStartupMessages({
  library(lme4); library(lmerTest); library(pbkrtest); library(jsonlite)
})
out <- file.path("tests", "reference", "lmm")
dir.create(out, showWarnings = FALSE, recursive = TRUE)
only <- commandArgs(trailingOnly = TRUE)
wanted <- function(name) length(only) == 0 || name %in% only

sanitise <- function(x) paste0("x_", gsub("^_+|_+$", "", gsub("[^0-9A-Za-z]+", "_", x)))

write_design <- function(name, y, X, group, re_cols, source) {
  if (!wanted(name)) return(invisible(NULL))
  colnames(X)[colnames(X) == "(Intercept)"] <- "Intercept"
  terms <- colnames(X)
  colnames(X) <- sanitise(terms)
  frame <- data.frame(group = as.character(group), y = y, X, check.names = FALSE)
  write.csv(frame, file.path(out, paste0(name, ".csv")), row.names = FALSE, quote = TRUE)
  meta <- list(fixed_names = I(colnames(X)), re_names = I(sanitise(re_cols)),
               term_map = setNames(as.list(terms), colnames(X)), source = source,
               n_clients = length(unique(group)))
  write_json(meta, file.path(out, paste0(name, ".design.json")), auto_unbox = TRUE, pretty = TRUE)
}

# ---- public data sets in the universal format
data("sleepstudy", package = "lme4")
write_design("sleepstudy", sleepstudy$Reaction, model.matrix(~ Days, sleepstudy), sleepstudy$Subject,
             c("Intercept", "Days"), "lme4::sleepstudy (balanced; fixed design = random design)")
write_design("sleepstudy_ri", sleepstudy$Reaction, model.matrix(~ Days, sleepstudy), sleepstudy$Subject,
             "Intercept", "lme4::sleepstudy, random intercept only")

data("BtheB", package = "HSAUR3")
BtheB$subject <- factor(rownames(BtheB))
nobs <- nrow(BtheB)
long <- reshape(BtheB, idvar = "subject", varying = c("bdi.2m", "bdi.3m", "bdi.5m", "bdi.8m"),
                direction = "long")
long$time <- rep(c(2, 3, 5, 8), rep(nobs, 4))
long <- na.omit(long[, c("subject", "bdi", "bdi.pre", "time", "treatment", "drug", "length")])
long <- long[order(as.integer(as.character(long$subject)), long$time), ]
Xb <- model.matrix(~ bdi.pre + time + treatment + drug + length, long)
for (v in c("ri_ml", "ri_reml")) write_design(paste0("btheb_", v), long$bdi, Xb, long$subject, "Intercept",
  "HSAUR3::BtheB, long form, na.omit (unbalanced by dropout; covariates not in the random design)")
for (v in c("rs_ml", "rs_reml")) write_design(paste0("btheb_", v), long$bdi, Xb, long$subject,
  c("Intercept", "time"), "HSAUR3::BtheB, long form, na.omit, random intercept and slope on time")

# ---- fit every case
reml_of <- function(name) !grepl("_ml$", name)
cases <- sub("\\.design\\.json$", "", list.files(out, pattern = "\\.design\\.json$"))
stopifnot(all(only %in% cases))
cases <- Filter(wanted, cases)

fit_case <- function(name) {
  meta <- fromJSON(file.path(out, paste0(name, ".design.json")))
  d <- read.csv(file.path(out, paste0(name, ".csv")), colClasses = c(group = "character"))
  fx <- meta$fixed_names; re <- meta$re_names
  form <- as.formula(paste("y ~ 0 +", paste(fx, collapse = " + "), "+ (0 +", paste(re, collapse = " + "),
                           "| group)"))
  reml <- reml_of(name)
  tight_b <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5, rhoend = 1e-12),
                         check.conv.singular = "ignore")
  tight_n <- lmerControl(optimizer = "nloptwrap", optCtrl = list(maxeval = 1e5, xtol_abs = 1e-12,
                         ftol_abs = 1e-14, xtol_rel = 1e-12, ftol_rel = 1e-14), check.conv.singular = "ignore")
  fb <- lmer(form, d, REML = reml, control = tight_b)
  fn <- lmer(form, d, REML = reml, control = tight_n)
  crit <- function(f) if (reml) REMLcrit(f) else deviance(f)
  fit <- if (crit(fn) < crit(fb)) fn else fb
  other <- if (identical(fit, fn)) fb else fn
  ft <- as_lmerModLmerTest(fit)
  beta <- fixef(fit); V <- as.matrix(vcov(fit)); se <- sqrt(diag(V))
  vc <- as.data.frame(VarCorr(fit))
  sing <- isSingular(fit, tol = 1e-4)
  cs <- summary(ft)$coefficients
  satt <- lapply(fx, function(n) list(df = cs[n, "df"], t = cs[n, "t value"], p = cs[n, "Pr(>|t|)"]))
  names(satt) <- fx
  kr <- NULL
  if (reml && !sing) {
    vadj <- vcovAdj(fit)
    kr <- lapply(seq_along(fx), function(i) {
      L <- matrix(0, 1, length(fx)); L[1, i] <- 1
      list(df = Lb_ddf(L, V, vadj), se_adj = sqrt(as.numeric(L %*% as.matrix(vadj) %*% t(L))))
    })
    names(kr) <- fx
  }
  # contrasts of interest
  cons <- list()
  add <- function(cname, w) {
    L <- setNames(rep(0, length(fx)), fx); L[names(w)] <- unlist(w)
    s1 <- contest1D(ft, L, ddf = "Satterthwaite")
    item <- list(name = cname, L = as.list(L[L != 0]), estimate = s1$Estimate, se = s1$`Std. Error`,
                 satterthwaite_df = s1$df, satterthwaite_p = s1$`Pr(>|t|)`)
    if (!is.null(kr)) {
      k1 <- contest1D(ft, L, ddf = "Kenward-Roger")
      item$kr_se <- k1$`Std. Error`; item$kr_df <- k1$df; item$kr_p <- k1$`Pr(>|t|)`
    }
    cons[[length(cons) + 1]] <<- item
  }
  if ("x_week_hip" %in% fx) {
    add("headline: difference in change at week 6", list(x_week_hip = 6))
    add("comparator change at week 6", list(x_week = 6))
    add("hip-focused change at week 6", list(x_week = 6, x_week_hip = 6))
  }
  if ("x_week_after1_hip" %in% fx) {
    # piecewise time trend (analysis.model.specification): change of the hip-minus-knee slope at the knot,
    # and the difference in change at week 9 (3 weeks past the knot at week 6)
    add("slope change at the knot", list(x_week_after1_hip = 1))
    add("difference in change at week 9", list(x_week_hip = 9, x_week_after1_hip = 3))
  }
  if ("x_time" %in% fx) { add("time", list(x_time = 1)); add("treatment", list(x_treatmentBtheB = 1)) }
  if ("x_Days" %in% fx) add("Days", list(x_Days = 1))
  if ("x_t" %in% fx) add("t", list(x_t = 1))
  rf <- ranef(fit)$group
  ranef_list <- lapply(seq_len(nrow(rf)), function(i) I(as.numeric(rf[i, ])))
  names(ranef_list) <- rownames(rf)
  cov_re <- as.matrix(VarCorr(fit)$group)
  variances <- setNames(as.list(diag(cov_re)), re)
  res <- list(
    case = name, reml = reml, formula = deparse1(form), n_obs = nrow(d), n_groups = length(unique(d$group)),
    fixed_names = I(fx), re_names = I(re), term_map = meta$term_map, source = meta$source,
    beta = as.list(beta), vcov = unname(lapply(seq_len(nrow(V)), function(i) V[i, ])), se = as.list(se),
    theta = I(unname(getME(fit, "theta"))), sigma = sigma(fit),
    varcorr = list(variances = variances, covariance = if (length(re) > 1) cov_re[1, 2] else NULL,
                   correlation = if (length(re) > 1) attr(VarCorr(fit)$group, "correlation")[1, 2] else NULL,
                   residual = sigma(fit)^2),
    deviance = crit(fit), logLik = as.numeric(logLik(fit)), isSingular = sing,
    optimizer = fit@optinfo$optimizer,
    optimizer_check = list(optimizer = other@optinfo$optimizer, theta = unname(getME(other, "theta")),
                           deviance = crit(other)),
    satterthwaite = satt, kenward_roger = kr, contrasts = cons, ranef = ranef_list,
    fitted_head = unname(head(fitted(fit), 50)), resid_head = unname(head(residuals(fit), 50)))
  write_json(res, file.path(out, paste0(name, ".json")), auto_unbox = TRUE, digits = NA, pretty = TRUE,
             null = "null")
  cat(sprintf("%-14s n=%5d groups=%4d singular=%-5s crit=%.6f theta=%s  |dtheta| vs %s = %.1e\n", name, nrow(d),
              length(unique(d$group)), sing, crit(fit), paste(format(getME(fit, "theta"), digits = 6), collapse = ","),
              other@optinfo$optimizer, max(abs(getME(fit, "theta") - getME(other, "theta")))))
}
invisible(lapply(cases, fit_case))

vers <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
             lmerTest = as.character(packageVersion("lmerTest")), pbkrtest = as.character(packageVersion("pbkrtest")),
             Matrix = as.character(packageVersion("Matrix")), HSAUR3 = as.character(packageVersion("HSAUR3")))
write_json(vers, file.path(out, "versions.json"), auto_unbox = TRUE, pretty = TRUE)
