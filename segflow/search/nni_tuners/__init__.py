"""NNI 3.0 tuners made to run on numpy 2.4, scipy 1.17 and ConfigSpace 1.x.

NNI's last release (3.0, 2023) predates these versions, and seven of the nine tuners segflow offers
can crash inside NNI's dispatcher as shipped. Each class here is the upstream tuner with the smallest
change that makes it run; NNI loads it by class name through `CustomAlgorithmConfig`, so the
installed NNI package is not modified. SMAC is different: NNI's tuner needs smac4nni and
ConfigSpaceNNI, which have no wheel and do not build, so `smac3.Smac` puts SMAC3 (the maintained
library) behind NNI's tuner interface. TPE's fix is for a race rather than a version: a result that
arrives after its trial's end. Evolution and DNGO run as shipped.

One module per tuner (values.py and config_space.py are shared helpers), and nothing imported
here: NNI's manager gives the dispatcher process 10 s (hard-coded) to start and connect, and
importing every fixed tuner (SMAC3 pulls dask, BOHB statsmodels) doubled that start-up on a busy
two-core machine.
"""

# algo name -> class that NNI's dispatcher imports by name
FIXED = {
    "tpe": "segflow.search.nni_tuners.tpe.Tpe",
    "anneal": "segflow.search.nni_tuners.anneal.Anneal",
    "smac": "segflow.search.nni_tuners.smac3.Smac",
    "hyperband": "segflow.search.nni_tuners.advisors.Hyperband",
    "metis": "segflow.search.nni_tuners.metis.Metis",
    "bohb": "segflow.search.nni_tuners.bohb.BOHB",
    "gp": "segflow.search.nni_tuners.gp.GP",
}
