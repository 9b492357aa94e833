/* Annotator embeddings under mpirun (tests/cli_mpi_lm.sh): rank 0 prints a
 * hash of the bits of emdpo_lm_embed_annotators's summaries, the k-means
 * input of Cluster-DPO and of fit --policy llama, which must be one
 * process's bits for any number of processes (each runs its share of the
 * batches; an annotator's decisions may span two shares).
 *   mpi_embed MODEL TOKENIZER DATA BATCH */
#include <stdio.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "base/hash.h"
#include "data/data.h"
#include "emdpo.h"
#include "lm/lm_embed.h"

int main(int argc, char **argv) {
    emdpo_dist_init(&argc, &argv);
    if (argc != 5) {
        fprintf(stderr, "usage: mpi_embed MODEL TOKENIZER DATA BATCH\n");
        emdpo_dist_finish(2);
        return 2;
    }
    emdpo_diag diag;
    emdpo_llama *m = NULL;
    emdpo_tokenizer *tok = NULL;
    emdpo_data *d = NULL;
    emdpo_lm_set *set = NULL;
    double *x = NULL;
    size_t n = 0;
    int rc = emdpo_llama_load(argv[1], &m, &diag);
    if (!rc) rc = emdpo_tokenizer_load(argv[2], emdpo_llama_vocab_size(m), &tok, &diag);
    if (!rc) rc = emdpo_data_read(argv[3], EMDPO_FORMAT_AUTO, &d, &diag);
    if (!rc) rc = emdpo_lm_set_from_data(d, tok, 64, 32, &set);
    if (!rc) {
        n = (size_t)d->n_annot * (size_t)m->config.dim;
        if (!(x = emdpo_malloc(n * sizeof *x))) rc = EMDPO_ERR_NOMEM;
    }
    if (!rc) rc = emdpo_lm_embed_annotators(m, d, set, atoi(argv[4]), x);
    if (rc) fprintf(stderr, "mpi_embed: %s\n", emdpo_status_name(rc));
    else if (emdpo_dist_rank() == 0)
        printf("%016llx\n", (unsigned long long)emdpo_hash_bytes(x, n * sizeof *x));
    emdpo_free(x, n * sizeof *x);
    emdpo_lm_set_free(set);
    emdpo_data_free(d);
    emdpo_tokenizer_free(tok);
    emdpo_llama_free(m);
    emdpo_dist_finish(rc ? 1 : 0);
    return rc ? 1 : 0;
}
