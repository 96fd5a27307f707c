
$01a209b7-bf17-7729-8b3a-77b01f44da91/covid-realtime/ingest1.0"!io.covidrealtime.case.reported.v1*%
datacontenttypeapplication/json*
revisioningest-00001*
time:¦’’ØÉðôÃ*H
traceparent9700-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01B
x