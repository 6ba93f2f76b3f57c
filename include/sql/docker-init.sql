-- Docker stack: the warehouse database beside Airflow's metadata database.
CREATE DATABASE warehouse;
