
$01a209b7-bf17-7729-8b3a-77b01f44da91/covid-realtime/ingest1.0"!io.covidrealtime.case.reported.v1*%
datacontettnypeapplication/json*
resoviinin)est-00002*
time:í¶…íÿÙ√*H
traceparent9700-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00:Y{"age":34,"infectedtype":"cmmunitary","location":"Pet√©n","name":"Ana","state":"active"}