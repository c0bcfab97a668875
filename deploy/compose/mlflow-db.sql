-- compose.yaml: a database of its own for MLflow's tracking store, beside the publications' database
CREATE DATABASE mlflow OWNER hotspot;
