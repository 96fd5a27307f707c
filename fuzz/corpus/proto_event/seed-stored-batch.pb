
-stored-01a209b7-bf17-7729-8b3a-77b01f44da91-1/w1.0"io.covidrealtime.case.stored.v1*%
datacontenttypeapplication/json*
time:¦’’ØŒÄ:ï{"cases":[{"age":34,"id":"01a209b7-bf17-7729-8b3a-77b01f44da91","infectedtype":"communitary","location":"PetÃ©n","name":"Ana","path":"grpc","reported_ms":1795459366679,"revision":"ingest-00001","state":"active","stored_ms":1795459366679}]}