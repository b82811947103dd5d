"""Amazon SageMaker: launch a run as a training job, and run inside one.

``launcher`` (used by ``grpo-host launch sagemaker``) builds wheels of the host and of every
plugin the run uses, writes them with a requirements file and the run config into the job's
source, and submits the job with the SageMaker SDK's ``ModelTrainer``. ``job_env`` maps
SageMaker's container contract (``SM_MODEL_DIR``, ``SM_CHANNEL_*``, hyperparameters, ...) onto
run-config overrides, which ``grpo-host train`` applies when it runs inside a job.

Nothing here imports the SageMaker SDK or boto3 at import time: the SDK is the optional extra
``pip install 'grpo-host[sagemaker]'``, needed only on the machine that launches.
"""
