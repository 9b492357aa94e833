/* The experimental API (emdpo/experimental.h) through the shared library:
 * populations, phrase inventories, the simulator (against the logit it
 * samples from), country opinions and the identifiability study. */
#include <math.h>

#include "api_util.h"
#include "emdpo/experimental.h"

static void test_populations(void) {
    const emdpo_population *p = emdpo_population_preset("personalities");
    const emdpo_population *c = emdpo_population_preset("personalities-collapsed");
    CHECK(p && p->K == 3 && p->p == EMDPO_N_TRAITS && p->eta[2] == 0.4);
    CHECK(c && c->K == 2 && c->p == EMDPO_N_TRAITS);
    /* The collapsed twin merges P1 and P2 = -P1 into theta = 0. */
    for (int q = 0; p && q < EMDPO_N_TRAITS; q++) CHECK(p->theta[q] == -p->theta[EMDPO_N_TRAITS + q]);
    CHECK(emdpo_population_preset("nobody") == NULL && emdpo_population_preset(NULL) == NULL);

    emdpo_inventory *inv = NULL, *sub = NULL;
    CHECK_EQ_INT(emdpo_inventory_builtin(&inv), EMDPO_OK);
    CHECK(inv && emdpo_inventory_n(inv) >= 10);
    CHECK_EQ_INT(emdpo_inventory_subset(inv, 10, &sub), EMDPO_OK);
    CHECK(sub && emdpo_inventory_n(sub) == 10);
    emdpo_inventory_free(sub);
    CHECK_EQ_INT(emdpo_inventory_subset(inv, 0, &sub), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_inventory_subset(inv, emdpo_inventory_n(inv) + 1, &sub), EMDPO_ERR_INVALID_ARG);
    emdpo_inventory_free(inv);

    /* An MPI CSV: phrases grouped by text, quotes and CRLF allowed. */
    const char *mpi = api_write("mpi.csv", "label_raw,text,label_ocean,key\r\n"
                                           "x,\"Talk a lot, loudly\",E,1\r\n"
                                           "x,Worry about things,N,1\r\n"
                                           "x,\"Talk a lot, loudly\",A,-1\r\n"
                                           "x,Keep calm,N,-1\r\n");
    CHECK_EQ_INT(emdpo_inventory_load_mpi(mpi, &inv, NULL), EMDPO_OK);
    CHECK(inv && emdpo_inventory_n(inv) == 3);
    emdpo_inventory_free(inv);
    const char *bad = api_write("bad.csv", "label_raw,text,label_ocean,key\nx,Talk,E,2\n");
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_inventory_load_mpi(bad, &inv, &diag), EMDPO_ERR_PARSE);
    CHECK(inv == NULL && diag.line == 2 && strstr(diag.msg, "key"));
    CHECK_EQ_INT(emdpo_inventory_load_mpi(api_path("none.csv"), &inv, &diag), EMDPO_ERR_IO);
}

static void test_simulate(void) {
    emdpo_sim_spec s;
    emdpo_sim_spec_init(&s);
    CHECK(s.n_annotators == 1000 && s.decisions == 1 && s.items == 3 && s.response == EMDPO_SIM_TOP &&
          s.design == EMDPO_SIM_PHRASES && s.seed == 1 && s.pop.K == 3);
    s.n_annotators = 300;
    int32_t type[300];
    emdpo_data *d = NULL, *e = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, type, &diag), EMDPO_OK);
    if (!d) return;
    CHECK(emdpo_data_n_decisions(d) == 300 && emdpo_data_n_features(d) == EMDPO_N_TRAITS && emdpo_data_has_text(d));
    CHECK(strcmp(emdpo_data_feature_name(d, 0), "O") == 0);
    /* The group is the true type; the shares follow eta. */
    int count[3] = {0}, same = 1;
    for (int64_t i = 0; i < 300; i++) {
        const char *g = emdpo_data_group_name(d, emdpo_data_annotator_group(d, i));
        char want[16];
        snprintf(want, sizeof want, "P%d", type[i] + 1);
        same &= g && strcmp(g, want) == 0;
        count[type[i]]++;
    }
    CHECK(same && abs(count[2] - 120) < 35 && abs(count[0] - 90) < 35);
    CHECK_EQ_INT(emdpo_simulate(&s, &e, NULL, NULL), EMDPO_OK);
    int identical = e && emdpo_data_n_items(e) == emdpo_data_n_items(d);
    for (int64_t i = 0; identical && i < emdpo_data_n_items(d); i++)
        identical &= strcmp(emdpo_data_item_text(d, i), emdpo_data_item_text(e, i)) == 0;
    CHECK(identical);
    emdpo_data_free(e);
    emdpo_data_free(d);

    /* One Gaussian type: the chosen item's share of wins matches the logit
     * it was drawn from, decision by decision in expectation. */
    const double theta[3] = {1.5, -0.5, 0.0}, eta[1] = {1};
    s.pop = (emdpo_population){1, 3, theta, eta, NULL};
    s.design = EMDPO_SIM_GAUSSIAN;
    s.n_annotators = 4000;
    s.items = 4;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, &diag), EMDPO_OK);
    /* Items are stored chosen first; the winner is drawn from the logit:
     * P(the argmax wins) = E[max_i p_i], E[p_chosen] = E[sum_i p_i^2]. */
    double want_max = 0, got_max = 0, want_p = 0, got_p = 0;
    for (int64_t j = 0; d && j < 4000; j++) {
        int64_t first;
        int n = emdpo_data_decision_items(d, j, &first), arg = 0;
        double u[4] = {0}, z = 0, x[3], sq = 0;
        for (int i = 0; i < n; i++) {
            emdpo_data_item_features(d, first + i, x, 3);
            u[i] = exp(theta[0] * x[0] + theta[1] * x[1] + theta[2] * x[2]);
            z += u[i];
            if (u[i] > u[arg]) arg = i;
        }
        for (int i = 0; i < n; i++) sq += (u[i] / z) * (u[i] / z);
        want_max += u[arg] / z / 4000;
        got_max += (arg == 0) / 4000.0;
        want_p += sq / 4000;
        got_p += u[0] / z / 4000;
    }
    CHECK_MSG(fabs(got_max - want_max) < 0.03, "argmax wins %g, expected %g", got_max, want_max);
    CHECK_MSG(fabs(got_p - want_p) < 0.02, "chosen probability %g, expected %g", got_p, want_p);
    emdpo_data_free(d);

    s.response = EMDPO_SIM_RANKING;
    s.n_annotators = 10;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, &diag), EMDPO_OK);
    CHECK(d && emdpo_data_decision_stages(d, 0) == 3);
    emdpo_data_free(d);
    /* A population of another width than the phrases' five traits. */
    s.design = EMDPO_SIM_PHRASES;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, &diag), EMDPO_ERR_INVALID_ARG);
    emdpo_sim_spec_init(&s);
    s.items = 1;
    CHECK_EQ_INT(emdpo_simulate(&s, &d, NULL, &diag), EMDPO_ERR_INVALID_ARG);
    CHECK(strcmp(emdpo_sim_response_name(EMDPO_SIM_RANKING), "ranking") == 0 && emdpo_sim_design_name(2) == NULL);
}

static void test_goqa(void) {
    emdpo_goqa_opts o;
    emdpo_goqa_opts_init(&o);
    emdpo_goqa_bank *b = NULL;
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_goqa_bank_load(EMDPO_GOQA_BUILTIN, NULL, &o, &b, &diag), EMDPO_OK);
    if (!b) return;
    CHECK(emdpo_goqa_bank_n(b) > 10 && emdpo_goqa_bank_n_countries(b) == 4 &&
          emdpo_goqa_bank_source(b) == EMDPO_GOQA_BUILTIN);
    for (int c = 0; c < 4; c++) CHECK(strcmp(emdpo_goqa_bank_country(b, c), emdpo_goqa_builtin_country(c)) == 0);
    CHECK(emdpo_goqa_builtin_country(4) == NULL && emdpo_goqa_bank_country(b, 4) == NULL);
    emdpo_goqa_spec s;
    emdpo_goqa_spec_init(&s);
    CHECK(s.n_annotators == 1500 && s.questions == 32 && s.rejected == 1 && s.seed == 1);
    s.n_annotators = 100;
    s.questions = 5;
    s.first_annotator = 10;
    int32_t country[100];
    emdpo_data *d = NULL;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &s, &d, country, &diag), EMDPO_OK);
    if (d) {
        CHECK(emdpo_data_n_annotators(d) == 100 && emdpo_data_n_decisions(d) == 500 && emdpo_data_max_items(d) == 2);
        CHECK(strcmp(emdpo_data_annotator(d, 0), "a11") == 0);
        int same = 1;
        for (int64_t i = 0; i < 100; i++)
            same &= strcmp(emdpo_data_group_name(d, emdpo_data_annotator_group(d, i)),
                           emdpo_goqa_bank_country(b, country[i])) == 0;
        CHECK(same);
        /* Five distinct questions per annotator. */
        int distinct = 1;
        for (int64_t i = 0; i < 100; i++)
            for (int a = 0; a < 5; a++)
                for (int c = 0; c < a; c++)
                    distinct &= strcmp(emdpo_data_decision_prompt(d, i * 5 + a), emdpo_data_decision_prompt(d, i * 5 + c)) != 0;
        CHECK(distinct);
    }
    emdpo_data_free(d);
    CHECK_EQ_INT(emdpo_goqa_bank_write_questions(b, api_path("q.jsonl"), &diag), EMDPO_OK);
    FILE *fp = fopen(api_path("q.jsonl"), "r");
    int64_t lines = 0;
    for (int ch; fp && (ch = fgetc(fp)) != EOF;) lines += ch == '\n';
    if (fp) fclose(fp);
    CHECK_EQ_INT(lines, emdpo_goqa_bank_n(b));
    s.questions = (int)emdpo_goqa_bank_n(b) + 1;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &s, &d, NULL, &diag), EMDPO_ERR_INVALID_ARG);
    double w[4] = {1, -1, 0, 0};
    s.questions = 2;
    s.weights = w;
    CHECK_EQ_INT(emdpo_goqa_simulate(b, &s, &d, NULL, &diag), EMDPO_ERR_INVALID_ARG);
    emdpo_goqa_bank_free(b);
    const char *names[2] = {"Arden", "Atlantis"};
    o.countries = names;
    o.n_countries = 2;
    CHECK_EQ_INT(emdpo_goqa_bank_load(EMDPO_GOQA_BUILTIN, NULL, &o, &b, &diag), EMDPO_ERR_INVALID_ARG);
    emdpo_goqa_opts_init(&o);
    CHECK_EQ_INT(emdpo_goqa_bank_load(EMDPO_GOQA_INDEX, NULL, &o, &b, &diag), EMDPO_ERR_INVALID_ARG);
    CHECK_EQ_INT(emdpo_goqa_bank_load(EMDPO_GOQA_CSV, api_path("none.csv"), &o, &b, &diag), EMDPO_ERR_IO);
    CHECK(strcmp(emdpo_goqa_source_name(EMDPO_GOQA_SUBSET), "subset") == 0 && emdpo_goqa_est_name(2) == NULL);
}

static void test_identify(void) {
    emdpo_identify_spec s;
    emdpo_identify_spec_init(&s);
    CHECK(s.n_items == 2 && s.items[1] == 3 && s.n_sizes == 4 && s.sizes[3] == 16000 && s.starts == 3);
    s.n_sizes = 1;
    s.sizes[0] = 300;
    s.starts = 1;
    s.max_iter = 40;
    emdpo_identify_row rows[2];
    emdpo_diag diag;
    CHECK_EQ_INT(emdpo_identify_run(&s, rows, NULL, NULL, &diag), EMDPO_OK);
    /* Pairs: truth and collapsed give every choice the same probability. */
    CHECK(rows[0].items == 2 && rows[0].max_dp < 1e-12 && fabs(rows[0].ll_gap) < 1e-6);
    CHECK(rows[1].items == 3 && rows[1].max_dp > 1e-3 && rows[1].n_annot == 300);
    char lines[EMDPO_IDENTIFY_MAX_LINES][EMDPO_IDENTIFY_LINE_CAP];
    int n = emdpo_identify_conclude(&s, rows, lines[0], sizeof lines[0], EMDPO_IDENTIFY_MAX_LINES);
    CHECK(n == 2 && strstr(lines[0], "no amount of this data separates them"));
    FILE *fp = fopen(api_path("id.json"), "w");
    CHECK(fp && emdpo_identify_write_json(&s, rows, NULL, fp) == EMDPO_OK);
    if (fp) fclose(fp);
    s.n_items = 0;
    CHECK_EQ_INT(emdpo_identify_run(&s, rows, NULL, NULL, &diag), EMDPO_ERR_INVALID_ARG);
}

int main(void) {
    api_init();
    emdpo_set_threads(2);
    test_populations();
    test_simulate();
    test_goqa();
    test_identify();
    api_done();
    return check_report("test_api_experimental");
}
