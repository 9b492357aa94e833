/* emdpo estep: EM-DPO around any trainer. The E-step on log-ratios
 * computed anywhere (a PyTorch or TRL run, another engine): the posterior
 * over types of each annotator, the new eta and the weights of the next
 * weighted-DPO round. */
#include <stdlib.h>

#include "cli.h"

int cmd_estep(int argc, char **argv) {
    const char *path = NULL, *eta_s = NULL, *out = NULL;
    double beta = 0.0;
    int normalize = 0, threads = 0, quiet = 0;
    cli_opt opts[] = {
        {"logratios", CLI_STR, &path, "FILE", "the decisions' log-ratios: .jsonl or .csv, optionally .gz", 1, 0, 0},
        {"beta", CLI_DBL, &beta, "B", "the policies' temperature: utilities are B * log-ratios", 1, 0, 0},
        {"eta", CLI_STR, &eta_s, "E1,E2,...", "the types' current weights, summing to 1 (default: uniform)", 0, 0, 0},
        {"normalize", CLI_FLAG, &normalize, NULL, "rescale each type's weights in weights.csv to mean 1 over the "
                                                  "decisions", 0, 0, 0},
        {"out", CLI_STR, &out, "DIR", "write DIR/posterior.csv, DIR/weights.csv and DIR/estep.json", 1, 0, 0},
        CLI_THREADS_FLAG(&threads),
        {"quiet", CLI_FLAG, &quiet, NULL, "print nothing but errors", 0, 0, 0},
    };
    cli_cmd cmd = {"estep", "The E-step of EM-DPO on log-ratios computed by any trainer.",
                   "FILE holds one decision per line (JSONL):\n"
                   "  {\"annotator\": \"u17\", \"logratios\": [[c, r1, r2], ...], \"ranking\": false}\n"
                   "with one inner array per type k = 1..K: log pi_k(y|x) - log pi_ref(y|x) of the decision's\n"
                   "items, the chosen item first (2 or more items; the same count for every type of a\n"
                   "decision). \"ranking\": true reads the items as a full ranking, best first (Plackett-Luce).\n"
                   "Or CSV with the header annotator,decision,type,item,logratio (type 1..K, item 0 the\n"
                   "chosen one, a decision's rows consecutive). .gz files are read as they are.\n\n"
                   "P_k(decision) = softmax(B * logratios_k) at the chosen item, and\n"
                   "  log gamma_ik = log eta_k + sum_j log P_k(V_ij) - logsumexp over types,\n"
                   "in log space throughout. Writes DIR/posterior.csv (annotator,gamma_1..gamma_K, annotators\n"
                   "in order of first appearance), DIR/weights.csv (annotator,weight_1..weight_K, one row per\n"
                   "decision in input order: the gamma of its annotator; emdpo dpo --weights with\n"
                   "--weight-column weight_k reads it) and DIR/estep.json (k, n_annotators, n_decisions,\n"
                   "beta, eta = the M-step's new eta = mean gamma, loglik = the observed-data\n"
                   "log-likelihood at the given eta, eta_in). Results are the same bits for any --threads.",
                   opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (!(beta > 0)) return cli_usage_error("estep", "--beta must be > 0");
    double eta[EMDPO_MAX_K];
    int n_eta = 0;
    if (eta_s && (n_eta = cli_parse_doubles(eta_s, eta, EMDPO_MAX_K)) < 1)
        return cli_usage_error("estep", "--eta must be 1 to %d comma-separated numbers", EMDPO_MAX_K);
    emdpo_set_threads(threads);

    emdpo_logratios *lr = NULL;
    emdpo_diag diag;
    if ((rc = emdpo_logratios_read(path, n_eta, &lr, &diag))) return cli_fail("estep", rc, &diag, &cmd);
    int K = emdpo_logratios_k(lr);
    int64_t n_annot = emdpo_logratios_n_annotators(lr), n_dec = emdpo_logratios_n_decisions(lr);
    size_t gn = (size_t)n_annot * K;
    double *gamma = malloc(gn * sizeof(double)), eta_new[EMDPO_MAX_K], loglik = 0.0;
    if (!gamma) {
        emdpo_logratios_free(lr);
        return cli_fail("estep", EMDPO_ERR_NOMEM, NULL, &cmd);
    }
    rc = emdpo_estep(K, n_dec, emdpo_logratios_values(lr), emdpo_logratios_n_items(lr), emdpo_logratios_offsets(lr),
                     emdpo_logratios_ranking(lr), emdpo_logratios_annotators(lr), n_annot, beta, n_eta ? eta : NULL,
                     gamma, eta_new, &loglik, &diag);
    if (!rc) rc = emdpo_estep_save(lr, beta, n_eta ? eta : NULL, gamma, eta_new, loglik, normalize, out, &diag);
    if (rc) {
        rc = cli_fail("estep", rc, &diag, &cmd);
    } else if (!quiet) {
        printf("E-step on %lld decisions of %lld annotators, K = %d, beta = %g: loglik %.6f\neta:", (long long)n_dec,
               (long long)n_annot, K, beta, loglik);
        for (int k = 0; k < K; k++) printf(" %.6f", eta_new[k]);
        printf("\nwrote %s/posterior.csv, %s/weights.csv%s, %s/estep.json\n", out, out,
               normalize ? " (mean 1 per type)" : "", out);
    }
    free(gamma);
    emdpo_logratios_free(lr);
    return rc;
}
