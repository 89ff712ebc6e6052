# Reference numbers for the project's meta-analysis estimators (src/analysis/pool/meta.py), from metafor.
#
# Run from the project root:  Rscript tests/reference/make_reference_metafor.R [case ...]
# (case names limit the run to those cases; no names = all).
# Needs Debian's r-cran-metafor and r-cran-jsonlite. Writes tests/reference/metafor/<case>.json.
# Convergence tolerances are tightened (REML threshold, uniroot tol) so the references are exact to
# ~1e-10; metafor's defaults stop at ~1e-5 in tau^2. `make test` never runs R.
suppressPackageStartupMessages({ library(metafor); library(jsonlite) })
out <- file.path("tests", "reference", "metafor")
dir.create(out, showWarnings = FALSE, recursive = TRUE)

cases <- list(
  k2 = list(y = c(-0.8, -0.2), v = c(0.09, 0.16),
            about = "two clinics: the smallest pooling; t(1) intervals are very wide"),
  k3_tau0 = list(y = c(-0.50, -0.52, -0.48), v = c(0.04, 0.09, 0.06),
                 about = "three homogeneous clinics: tau^2 truncated at 0"),
  k10_het = list(y = c(-1.2, -0.3, 0.4, -0.9, -1.8, 0.1, -0.6, -1.1, 0.5, -0.2),
                 v = c(0.05, 0.08, 0.12, 0.04, 0.2, 0.09, 0.06, 0.15, 0.1, 0.07),
                 about = "ten heterogeneous clinics"),
  unequal = list(y = c(-0.6, -0.2, -1.4, 0.3, -0.9), v = c(0.0004, 0.5, 2.0, 0.01, 0.9),
                 about = "very unequal standard errors (0.02 to 1.4)"),
  log_or = list(y = c(0.45, 0.10, 0.80, -0.20, 0.35, 0.62), v = c(0.12, 0.30, 0.45, 0.20, 0.09, 0.25),
                about = "responder log odds ratios of six clinics"),
  k2_far = list(y = c(-3, 3), v = c(1, 1),
                about = "two clinics 6 SEs apart: the Q-profile upper bound for tau^2 is above 1e4"),
  reml_bimodal = list(y = c(0.0002, 0.1886, 0.0425, -0.3697, -0.1570),
                      v = c(0.00049, 0.0684, 0.0040, 0.0279, 0.0113),
                      about = paste("very unequal SEs where the restricted likelihood has two maxima: a local one",
                                    "at tau^2 = 0 (the score there is negative) and a higher one inside")),
  agree4 = list(y = c(-0.58, -0.60, -0.61, -0.62), v = c(0.30, 0.35, 0.40, 0.50)^2,
                about = paste("four clinics that agree far more closely than their SEs imply (Knapp-Hartung",
                              "q << 1): plain Knapp-Hartung collapses to SE 0.0085, the ad hoc one keeps the Wald SE")),
  identical3 = list(y = c(-0.6, -0.6, -0.6), v = c(0.30, 0.40, 0.50)^2,
                    about = "three identical estimates: q = 0, plain Knapp-Hartung has zero width")
)
only <- commandArgs(trailingOnly = TRUE)
if (length(only)) cases <- cases[only]
tests <- c(knha = "knha", knha_modified = "adhoc", z = "z")
ctrl <- list(threshold = 1e-13, maxiter = 10000, tol = 1e-13, tau2.max = 1e8)

one <- function(y, v, method, test) {
  r <- rma(yi = y, vi = v, method = method, test = test, control = ctrl)
  p <- predict(r)
  ci <- confint(r, control = list(tol = 1e-13, tau2.max = 1e8))
  res <- list(estimate = as.numeric(r$beta), se = r$se, ci_low = r$ci.lb, ci_high = r$ci.ub, p_value = r$pval,
              pi_low = p$pi.lb, pi_high = p$pi.ub, tau2 = r$tau2, i2 = r$I2, h2 = r$H2, q = r$QE, q_p = r$QEp,
              tau2_ci = I(c(ci$random["tau^2", "ci.lb"], ci$random["tau^2", "ci.ub"])),
              i2_ci = I(c(ci$random["I^2(%)", "ci.lb"], ci$random["I^2(%)", "ci.ub"])),
              h2_ci = I(c(ci$random["H^2", "ci.lb"], ci$random["H^2", "ci.ub"])),
              weights = I(as.numeric(weights(r))))
  # influence() fails when a Knapp-Hartung SE is 0 (identical estimates): such fits carry no diagnostics
  if (length(y) >= 3 && r$se > 0) {
    l <- leave1out(r, control = ctrl)
    res$leave1out <- list(estimate = I(as.numeric(l$estimate)), se = I(as.numeric(l$se)),
                          tau2 = I(as.numeric(l$tau2)), i2 = I(as.numeric(l$I2)), q = I(as.numeric(l$Q)))
    inf <- influence(r)$inf
    res$influence <- list(rstudent = I(as.numeric(inf$rstudent)), cook_d = I(as.numeric(inf$cook.d)),
                          hat = I(as.numeric(inf$hat)), weight = I(as.numeric(inf$weight)))
  }
  res
}

for (name in names(cases)) {
  cs <- cases[[name]]
  fits <- list()
  for (method in c("REML", "PM", "DL")) for (tn in names(tests)) {
    fits[[paste(method, tn, sep = "/")]] <- one(cs$y, cs$v, method, tests[[tn]])
  }
  write_json(list(case = name, about = cs$about, y = I(cs$y), v = I(cs$v), fits = fits),
             file.path(out, paste0(name, ".json")), auto_unbox = TRUE, digits = NA, pretty = TRUE)
  r <- rma(cs$y, cs$v, method = "REML", test = "knha", control = ctrl)
  cat(sprintf("%-8s k=%2d REML tau2=%.6f mu=%.5f [%.4f, %.4f]\n", name, length(cs$y), r$tau2, r$beta, r$ci.lb, r$ci.ub))
}
write_json(list(R = R.version.string, metafor = as.character(packageVersion("metafor"))),
           file.path(out, "versions.json"), auto_unbox = TRUE, pretty = TRUE)
